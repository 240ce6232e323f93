// The lesson's shows service (:3001), as the lesson writes it: node-localstorage, load the
// whole list, check the seats, then write the whole list back. Under `pm2 start shows.js
// -i 4` two processes read the same list, both see the last seat, both write: oversold, and
// one write overwrites the other (lost update). Unknown ids crash the handler (500).
const express = require('express');
const { LocalStorage } = require('node-localstorage');

const localStorage = new LocalStorage(process.env.SHOWS_DATA || './data-shows');
const loadShows = () => JSON.parse(localStorage.getItem('shows') || '[]');
const saveShows = (shows) => localStorage.setItem('shows', JSON.stringify(shows, null, 2));

const app = express()
  .use(express.json())
  .use(express.urlencoded({ extended: true }))
  .put('/release-seats', (req, res) => {
    let { count, showID } = req.body;
    count = parseInt(count);
    const shows = loadShows();
    const show = shows.find((s) => s._id === showID);
    show.reserved -= count;
    saveShows(shows);
    res.json(show);
  })
  .put('/hold-seats', (req, res) => {
    let { count, showID } = req.body;
    count = parseInt(count);
    const shows = loadShows();
    const show = shows.find((s) => s._id === showID);
    const remainingSeats = show.houseSize - show.reserved;
    if (remainingSeats < count) {
      return res.status(500).json({
        error: `cannot reserve ${count} seats. Only ${remainingSeats} remaining.`,
      });
    }
    show.reserved += count;
    saveShows(shows);
    res.json(show);
  })
  .get('/show/:id', (req, res) => {
    const show = loadShows().find((s) => s._id === req.params.id);
    res.json(show);
  })
  .get('/', (req, res) => res.json(loadShows()));

const port = process.env.PORT || 3001;
app.listen(port, () => console.log(`shows service running on port ${port}`));
