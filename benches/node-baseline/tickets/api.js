// The lesson's api (:3000): hold seats on the shows service, then book on the reservations
// service. Nothing ties the two: a failure between them leaks the held seats forever, a
// cancel never gives seats back, and every error is a 500.
const express = require('express');

const SHOWS = process.env.SHOWS_URL || 'http://localhost:3001';
const RESERVATIONS = process.env.RESERVATIONS_URL || 'http://localhost:3002';
const send = (url, method, body) =>
  fetch(url, {
    method,
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' },
  }).then((r) => r.json());

const app = express()
  .use(express.json())
  .use(express.urlencoded({ extended: true }))
  .get('/', async (req, res) => res.json(await fetch(SHOWS).then((r) => r.json())))
  .get('/show/:id', async (req, res) => {
    res.json(await fetch(`${SHOWS}/show/${req.params.id}`).then((r) => r.json()));
  })
  .post('/reserve', async (req, res) => {
    const { count, showID, name } = req.body;
    const hold = await send(`${SHOWS}/hold-seats`, 'PUT', { count, showID });
    if (hold.error) return res.status(500).json(hold);
    const reservation = await send(`${RESERVATIONS}/reserveTickets`, 'POST', { count, showID, name });
    res.json(reservation);
  })
  .delete('/cancel', async (req, res) => {
    const { showID, name } = req.body;
    res.json(await send(`${RESERVATIONS}/cancel`, 'DELETE', { showID, name }));
  });

const port = process.env.PORT || 3000;
app.listen(port, () => console.log(`api running on port ${port}`));
