// The lesson's reservations service (:3002): one JSON object of lists, loaded and written
// back whole on every request. Under `pm2 start reservations.js -i 2` concurrent writes
// overwrite each other (lost reservations); a cancel of an unknown show crashes (500).
const express = require('express');
const { LocalStorage } = require('node-localstorage');

const localStorage = new LocalStorage(process.env.RESERVATIONS_DATA || './data-reservations');
const loadReservations = () => JSON.parse(localStorage.getItem('reservations') || '{}');
const saveReservations = (reservations) =>
  localStorage.setItem('reservations', JSON.stringify(reservations, null, 2));

const app = express()
  .use(express.json())
  .use(express.urlencoded({ extended: true }))
  .delete('/cancel', (req, res) => {
    const { showID, name } = req.body;
    const reservations = loadReservations();
    let reservationList = reservations[showID];
    reservationList = reservationList.filter((r) => r.name !== name);
    reservations[showID] = reservationList;
    saveReservations(reservations);
    res.json({ canceled: true, showID, name });
  })
  .post('/reserveTickets', (req, res) => {
    const { count, showID, name } = req.body;
    const reservations = loadReservations();
    if (!reservations[showID]) reservations[showID] = [];
    reservations[showID].push({ name, guests: count });
    saveReservations(reservations);
    res.json({ success: true, showID, name, guests: count });
  })
  .get('/reservations/:showID', (req, res) => {
    res.json(loadReservations()[req.params.showID] || []);
  })
  .get('/', (req, res) => res.json(loadReservations()));

const port = process.env.PORT || 3002;
app.listen(port, () => console.log(`reservations service running on port ${port}`));
