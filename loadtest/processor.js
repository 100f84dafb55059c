// What varies between requests: which book, which ids, which author or store, and the pages
// a reader walks through. The catalogue (ids, authors, stores with their sizes) is read once per
// worker from OPONN_LOADTEST_CATALOGUE, written by `loadtest/lib/catalogue.py export`.
//
// Popularity is skewed like real traffic: book ids follow a Zipf law (exponent
// OPONN_LOADTEST_ZIPF, 1.0 by default) over a fixed shuffle of the catalogue, so the hot ids are
// spread over stores and authors; authors and stores are drawn in proportion to their number
// of books. The shuffles are seeded, so every run and every worker agree on what is hot.
//
// Every GraphQL answer goes through `checkGraphql` (a scenario-level hook, so it runs before the
// expect plugin's), which counts it in `graphql.responses`, and the ones with an `errors` member
// or without `data` in `graphql.failed_responses` (and per error code in
// `graphql.errors.<CODE>`). Both counters are emitted on every answer, so the `ensure` conditions
// can always name them.
//
// The expect plugin checks the same bodies. Requests ask for `application/json`: GraphQL over
// HTTP's own media type, `application/graphql-response+json`, is not parsed as JSON by the
// plugin (2.15), whose property checks would then not see inside the answer.
'use strict';

const fs = require('fs');

const CATALOGUE_PATH = process.env.OPONN_LOADTEST_CATALOGUE;
const ZIPF_EXPONENT = Number(process.env.OPONN_LOADTEST_ZIPF || '1.0');
const ID_SETS = 1000;
const IDS_PER_SET = 100;
const MAX_PAGES = 3;

function seededRandom(seed) {
  // mulberry32: small, fast, and the same sequence on every worker.
  let state = seed >>> 0;
  return function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(items, seed) {
  const random = seededRandom(seed);
  const copy = items.slice();
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

// Cumulative weights, so that a draw is one binary search.
function cumulative(weights) {
  const sums = new Float64Array(weights.length);
  let total = 0;
  weights.forEach((weight, index) => {
    total += weight;
    sums[index] = total;
  });
  return sums;
}

function draw(sums, random) {
  const target = random() * sums[sums.length - 1];
  let low = 0;
  let high = sums.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sums[middle] < target) low = middle + 1;
    else high = middle;
  }
  return low;
}

function load() {
  if (!CATALOGUE_PATH) throw new Error('OPONN_LOADTEST_CATALOGUE is not set');
  const catalogue = JSON.parse(fs.readFileSync(CATALOGUE_PATH, 'utf8'));
  const byPopularity = shuffled(catalogue.books, 1);
  const zipf = cumulative(byPopularity.map((_, rank) => 1 / Math.pow(rank + 1, ZIPF_EXPONENT)));
  const random = seededRandom(2);
  const idSets = Array.from({ length: ID_SETS }, () => {
    const chosen = new Set();
    while (chosen.size < Math.min(IDS_PER_SET, catalogue.books.length)) {
      chosen.add(catalogue.books[Math.floor(random() * catalogue.books.length)]);
    }
    return Array.from(chosen);
  });
  return {
    byPopularity,
    zipf,
    // Cold reads walk the least popular ids first, from a random place per worker.
    coldOrder: byPopularity.slice().reverse(),
    coldNext: Math.floor(Math.random() * byPopularity.length),
    idSets,
    idSetWeights: cumulative(idSets.map((_, rank) => 1 / (rank + 1))),
    authors: catalogue.authors.map(([name]) => name),
    authorWeights: cumulative(catalogue.authors.map(([, count]) => count)),
    stores: catalogue.stores.map(([id]) => id),
    storeWeights: cumulative(catalogue.stores.map(([, count]) => count)),
  };
}

const data = load();

function popularBook() {
  return data.byPopularity[draw(data.zipf, Math.random)];
}

function pickBook(context, events, done) {
  context.vars.bookId = popularBook();
  return done();
}

function pickColdBook(context, events, done) {
  context.vars.bookId = data.coldOrder[data.coldNext % data.coldOrder.length];
  data.coldNext += 1;
  return done();
}

function pickHundredBooks(context, events, done) {
  const ids = new Set();
  while (ids.size < Math.min(IDS_PER_SET, data.byPopularity.length)) ids.add(popularBook());
  context.vars.ids = Array.from(ids);
  return done();
}

// bookstoresForBooks caches a result per set of ids, so the sets repeat (Zipf over 1,000 fixed
// sets): a popular set is warm, a rare one is not.
function pickBookSet(context, events, done) {
  context.vars.ids = data.idSets[draw(data.idSetWeights, Math.random)];
  return done();
}

function pickAuthor(context, events, done) {
  context.vars.filter = { author: data.authors[draw(data.authorWeights, Math.random)] };
  context.vars.pagesRead = 0;
  return done();
}

function pickStore(context, events, done) {
  context.vars.filter = { bookstoreId: data.stores[draw(data.storeWeights, Math.random)] };
  context.vars.pagesRead = 0;
  return done();
}

function pickUpdate(context, events, done) {
  context.vars.bookId = popularBook();
  context.vars.year = 1800 + Math.floor(Math.random() * 225);
  return done();
}

function checkGraphql(requestParams, response, context, events, done) {
  let failed = 0;
  let body = null;
  try {
    body = typeof response.body === 'string' ? JSON.parse(response.body) : response.body;
  } catch (error) {
    events.emit('counter', 'graphql.errors.NOT_JSON', 1);
  }
  if (!body || body.errors || body.data === undefined || body.data === null) {
    failed = 1;
    for (const error of (body && body.errors) || []) {
      const code = (error.extensions && error.extensions.code) || 'NO_CODE';
      events.emit('counter', `graphql.errors.${code}`, 1);
    }
  }
  events.emit('counter', 'graphql.responses', 1);
  events.emit('counter', 'graphql.failed_responses', failed);
  const page = body && body.data && body.data.books;
  if (page && page.pageInfo) {
    context.vars.endCursor = page.pageInfo.endCursor;
    context.vars.hasNextPage = page.pageInfo.hasNextPage === true;
    context.vars.pagesRead = (context.vars.pagesRead || 0) + 1;
  } else {
    context.vars.hasNextPage = false;
  }
  return done();
}

// A reader follows `after` while there is a next page, for at most MAX_PAGES pages in all.
function morePages(context, next) {
  return next(context.vars.hasNextPage === true && context.vars.pagesRead < MAX_PAGES);
}

module.exports = {
  pickBook,
  pickColdBook,
  pickHundredBooks,
  pickBookSet,
  pickAuthor,
  pickStore,
  pickUpdate,
  checkGraphql,
  morePages,
};
