//! Bad input over real sockets: every case gets its 4xx with a JSON error, and afterwards the
//! stored dogs and the counter are exactly as before.

mod common;

use common::cluster;
use common::http::{Client, ResponseExt, raw};
use serde_json::Value;

/// Method, path, content type, body, expected status.
type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, u16);

#[test]
fn bad_requests_get_json_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "1", "--shard-by", "alpha:a-m,n-z"],
    );
    let addr = server.addr.trim_start_matches("http://").to_owned();
    let mut client = Client::new(&addr);
    for (name, color) in [
        ("biscuit", "orange"),
        ("peep", "orange"),
        ("smokey", "grey"),
    ] {
        let r = client
            .post_json(
                "/dogs",
                &format!(r#"{{"name":"{name}","color":"{color}"}}"#),
            )
            .unwrap();
        assert_eq!(r.status, 201);
    }
    client.get("/").unwrap();
    let snapshot = |client: &mut Client| -> (Value, Value) {
        (
            client.get("/dogs").unwrap().json(),
            client.get("/count").unwrap().json(),
        )
    };
    let before = snapshot(&mut client);

    let long_name = "n".repeat(3000);
    let big_body = format!(r#"{{"name":"big","color":"{}"}}"#, "x".repeat(70 * 1024));
    let json_ct = "application/json";
    // (method, path, content type, body, expected status)
    let cases: Vec<Case> = vec![
        ("POST", "/dogs".into(), Some(json_ct), b"{".to_vec(), 400),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"rex","color":"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            b"not json".to_vec(),
            400,
        ),
        ("POST", "/dogs".into(), Some(json_ct), b"".to_vec(), 400),
        ("POST", "/dogs".into(), Some(json_ct), b"[]".to_vec(), 400),
        ("POST", "/dogs".into(), Some(json_ct), b"null".to_vec(), 400),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"rex"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"color":"red"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":7,"color":"red"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"rex","color":["red"]}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"","color":"red"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"rex","color":""}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            format!(r#"{{"name":"{}","color":"red"}}"#, "r".repeat(257)).into_bytes(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            format!(r#"{{"name":"rex","color":"{}"}}"#, "c".repeat(65)).into_bytes(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"re\nx","color":"red"}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"rex","color":"red","age":3}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            b"{\"name\":\"r\xffx\",\"color\":\"red\"}".to_vec(),
            400,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            big_body.into_bytes(),
            413,
        ),
        (
            "POST",
            "/dogs".into(),
            Some("text/plain"),
            br#"{"name":"rex","color":"red"}"#.to_vec(),
            415,
        ),
        (
            "POST",
            "/dogs".into(),
            None,
            br#"{"name":"rex","color":"red"}"#.to_vec(),
            415,
        ),
        (
            "POST",
            "/dogs".into(),
            Some("application/x-www-form-urlencoded"),
            b"name=rex&color=red".to_vec(),
            415,
        ),
        (
            "POST",
            "/dogs".into(),
            Some(json_ct),
            br#"{"name":"biscuit","color":"purple"}"#.to_vec(),
            409,
        ),
        (
            "PUT",
            "/dogs/biscuit".into(),
            Some(json_ct),
            br#"{"colour":"red"}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/dogs/biscuit".into(),
            Some(json_ct),
            br#"{"color":""}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/dogs/biscuit".into(),
            Some(json_ct),
            br#"{"color":5}"#.to_vec(),
            400,
        ),
        (
            "PUT",
            "/dogs/biscuit".into(),
            Some("text/plain"),
            br#"{"color":"red"}"#.to_vec(),
            415,
        ),
        (
            "PUT",
            "/dogs/nobody".into(),
            Some(json_ct),
            br#"{"color":"red"}"#.to_vec(),
            404,
        ),
        ("GET", format!("/dogs/{long_name}"), None, vec![], 400),
        (
            "PUT",
            format!("/dogs/{long_name}"),
            Some(json_ct),
            br#"{"color":"red"}"#.to_vec(),
            400,
        ),
        ("DELETE", format!("/dogs/{long_name}"), None, vec![], 400),
        ("GET", "/dogs/%FF%FE".into(), None, vec![], 400),
        ("GET", "/dogs/bad%0Aname".into(), None, vec![], 400),
        ("GET", "/dogs/nobody".into(), None, vec![], 404),
        ("DELETE", "/dogs/nobody".into(), None, vec![], 404),
        (
            "GET",
            "/dogs?color=orange&limit=0".into(),
            None,
            vec![],
            400,
        ),
        (
            "GET",
            "/dogs?color=orange&limit=99999".into(),
            None,
            vec![],
            400,
        ),
        (
            "GET",
            "/dogs?color=orange&limit=ten".into(),
            None,
            vec![],
            400,
        ),
        ("GET", "/dogs?color=%FF".into(), None, vec![], 400),
        ("GET", "/dogs?shape=round".into(), None, vec![], 400),
        ("GET", "/isprime".into(), None, vec![], 400),
        ("GET", "/isprime?number=abc".into(), None, vec![], 400),
        ("GET", "/isprime?number=-1".into(), None, vec![], 400),
        (
            "GET",
            "/isprime?number=99999999999999999999999".into(),
            None,
            vec![],
            400,
        ),
        ("GET", "/isprime?number=%FF".into(), None, vec![], 400),
        ("GET", "/no/such/route".into(), None, vec![], 404),
        ("GET", "/dogs/".into(), None, vec![], 404),
        ("POST", "/".into(), Some(json_ct), b"{}".to_vec(), 405),
        ("DELETE", "/count".into(), None, vec![], 405),
        (
            "PATCH",
            "/dogs/biscuit".into(),
            Some(json_ct),
            br#"{"color":"red"}"#.to_vec(),
            405,
        ),
        ("PUT", "/dogs".into(), Some(json_ct), b"{}".to_vec(), 405),
    ];
    assert!(cases.len() >= 30);
    for (method, path, content_type, body, want) in &cases {
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        if let Some(ct) = content_type {
            request.push_str(&format!("content-type: {ct}\r\n"));
        }
        request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let r = raw(&addr, &bytes)
            .unwrap_or_else(|e| panic!("{method} {}: {e}", &path[..path.len().min(60)]));
        let shown = &path[..path.len().min(60)];
        assert_eq!(r.status, *want, "{method} {shown}: {}", r.text());
        let error = r.json()["error"].as_str().map(str::to_owned);
        assert!(
            error.is_some_and(|e| !e.is_empty()),
            "{method} {shown}: no JSON error in {:?}",
            r.text()
        );
        assert!(
            r.header("x-worker-pid").is_some(),
            "{method} {shown}: no x-worker-pid"
        );
    }
    assert_eq!(
        snapshot(&mut client),
        before,
        "a rejected request changed stored data"
    );
}
