// The 50-client race, the same for the lesson's code and for shardkv: N bookings with
// distinct names (count 1, or counts cycling 1..3 with --mixed) fired at once; then the
// show and its reservations are read back. Prints one JSON line:
//   succeeded, refused, failed (no answer within 10 s), reserved (as the show says), booked guests
//   (from the reservations), oversold = max(0, guests of successful bookings - houseSize).
// usage: node race.js BOOK_URL SHOW_URL RESERVATIONS_URL SHOW_ID HOUSE [N] [--mixed]
const [bookUrl, showUrl, reservationsUrl, showID, house, n = '50'] = process.argv.slice(2);
const mixed = process.argv.includes('--mixed');

async function main() {
  const jobs = [];
  for (let i = 0; i < Number(n); i++) {
    const count = mixed ? (i % 3) + 1 : 1;
    const name = `guest-${String(i).padStart(2, '0')}`;
    jobs.push(
      fetch(bookUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ showID, name, count }),
        // The lesson's api never answers when a service's answer is not JSON.
        signal: AbortSignal.timeout(10000),
      })
        .then(async (r) => ({ count, status: r.status, body: await r.json().catch(() => null) }))
        .catch((e) => ({ count, status: 0, body: String(e) })),
    );
  }
  const results = await Promise.all(jobs);
  const won = results.filter((r) => r.body && r.body.success === true);
  const read = (url) =>
    fetch(url, { signal: AbortSignal.timeout(10000) })
      .then((r) => r.json())
      .catch((e) => ({ error: String(e) }));
  const show = await read(showUrl);
  const list = await read(reservationsUrl);
  const wonGuests = won.reduce((a, r) => a + r.count, 0);
  console.log(
    JSON.stringify({
      succeeded: won.length,
      refused: results.filter((r) => r.status >= 400).length,
      failed: results.filter((r) => r.status === 0).length,
      succeeded_guests: wonGuests,
      house: Number(house),
      reserved: show.reserved,
      reservations: Array.isArray(list) ? list.length : null,
      reservation_guests: Array.isArray(list) ? list.reduce((a, r) => a + Number(r.guests), 0) : null,
      oversold: Math.max(0, wonGuests - Number(house)),
      statuses: results.reduce((m, r) => ((m[r.status] = (m[r.status] || 0) + 1), m), {}),
    }),
  );
}
main();
