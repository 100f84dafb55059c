// The typed client against a live oponn server, as a frontend would use it. scripts/client-test
// starts a fresh server seeded with app/sample/books.json and passes OPONN_URL and OPONN_TOKEN.
// The persisted-query test expects a server that has not seen its query yet (a fresh one).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';

import type { GraphQLFormattedError } from 'graphql';

import { createClient, sha256 } from '../src/client';
import { errorCode } from '../src/errors';
import { graphql } from '../src/generated';
import type { CreateBookInput } from '../src/generated/graphql';
import { BookById, BooksByIds, BooksPage, CreateBook, CreateBookstore, UpdateBook } from '../src/operations';
import { type BookPage, bookPages } from '../src/pages';

const url = required('OPONN_URL');
const token = required('OPONN_TOKEN');
const reader = createClient({ url });
const writer = createClient({ url, token });
// Names and keys this run creates, unique so that they never meet an earlier run's.
const run = Date.now().toString();
// The seed file holds exactly what createBook takes, so the generated input type describes it.
const sample = JSON.parse(
  await readFile(new URL('../../../app/sample/books.json', import.meta.url), 'utf8'),
) as CreateBookInput[];

test('a query the server has not seen is refused by hash, registered by text, then run by hash', async () => {
  const exchanges: Exchange[] = [];
  const client = createClient({ url, fetch: recording(exchanges) });
  const FirstBook = graphql(`
    query FirstBook {
      books(first: 1) {
        nodes {
          id
        }
      }
    }
  `);

  const first = await client.query({ query: FirstBook, fetchPolicy: 'network-only' });
  const again = await client.query({ query: FirstBook, fetchPolicy: 'network-only' });

  assert.deepEqual(again.data, first.data);
  const [unknown, registered, byHash] = exchanges;
  // 1. The hash alone, in a GET URL: the server does not know it yet.
  assert.ok(unknown);
  assert.deepEqual(unknown.codes, ['PERSISTED_QUERY_NOT_FOUND'], 'a fresh server (scripts/client-test starts one)');
  assert.equal(unknown.method, 'GET');
  assert.equal(unknown.query, undefined);
  assert.equal(exchanges.length, 3);
  assert.ok(registered && byHash);
  // 2. Text and hash by POST: the server checks that the hash is the text's, runs and keeps it.
  assert.equal(registered.method, 'POST');
  assert.ok(registered.query);
  assert.equal(registered.hash, unknown.hash);
  assert.equal(registered.hash, await sha256(registered.query));
  assert.deepEqual(registered.codes, []);
  // 3. The hash alone again, now answered.
  assert.equal(byHash.method, 'GET');
  assert.equal(byHash.query, undefined);
  assert.equal(byHash.hash, unknown.hash);
  assert.deepEqual(byHash.codes, []);
});

test('a book is read by id', async () => {
  const hobbit = sample.find((book) => book.title === 'The Hobbit');
  assert.ok(hobbit);

  const { data } = await reader.query({ query: BookById, variables: { id: await idOf('The Hobbit') } });

  assert.equal(data?.book?.title, 'The Hobbit');
  assert.equal(data.book.sourceKey, hobbit.sourceKey);
  assert.deepEqual(data.book.authors, hobbit.authors);
  assert.equal(data.book.firstPublishYear, hobbit.firstPublishYear);
});

test('booksByIds answers in the order asked, with null for an id no book has', async () => {
  const [hobbit, rings] = [await idOf('The Hobbit'), await idOf('The Lord of the Rings')];
  const nobody = '000000000000000000000000';

  const { data } = await reader.query({ query: BooksByIds, variables: { ids: [rings, nobody, hobbit] } });

  assert.deepEqual(
    data?.booksByIds.map((book) => book?.title ?? null),
    ['The Lord of the Rings', null, 'The Hobbit'],
  );
});

test('the books list is walked to its end through edge cursors and pageInfo', async () => {
  const pageSize = 5;
  const pages: BookPage[] = [];
  for await (const page of bookPages(reader, null, pageSize)) pages.push(page);

  const books = pages.flatMap((page) => page.edges.map((edge) => edge.node));
  assert.ok(pages.length > 1, 'the sample fills more than one page');
  assert.equal(pages.length, Math.ceil(books.length / pageSize));
  assert.equal(new Set(books.map((book) => book.id)).size, books.length, 'no book is read twice');
  const titles = new Set(books.map((book) => book.title));
  for (const book of sample) assert.ok(titles.has(book.title), `${book.title} was read`);
  for (const [index, page] of pages.entries()) {
    const last = index === pages.length - 1;
    assert.equal(page.pageInfo.hasNextPage, !last);
    if (!last) assert.equal(page.edges.length, pageSize);
    assert.equal(page.pageInfo.endCursor, page.edges.at(-1)?.cursor ?? null);
  }
});

test('a writer with the bearer token creates a book, then updates it at the version it read', async () => {
  const input = { sourceKey: `/works/OL${run}W`, title: `Client Test ${run}`, authors: ['Client Test'] };

  const created = await writer.mutate({ mutation: CreateBook, variables: { input } });
  assert.equal(created.data?.createBook.version, 1);
  const id = created.data.createBook.id;
  const updated = await writer.mutate({
    mutation: UpdateBook,
    variables: { id, input: { title: `Client Test ${run} (revised)` }, expectedVersion: 1 },
  });

  assert.equal(updated.data?.updateBook.version, 2);
  // Read your write: another client, straight from the server.
  const { data } = await reader.query({ query: BookById, variables: { id }, fetchPolicy: 'network-only' });
  assert.equal(data?.book?.title, `Client Test ${run} (revised)`);
});

test('a mutation without a token is UNAUTHENTICATED and writes nothing', async () => {
  const title = `Anonymous ${run}`;

  await assert.rejects(
    reader.mutate({ mutation: CreateBook, variables: { input: { sourceKey: `/works/OL${run}1W`, title } } }),
    (error) => errorCode(error) === 'UNAUTHENTICATED',
  );

  const { data } = await reader.query({ query: BooksPage, variables: { filter: { title }, first: 1 } });
  assert.deepEqual(data?.books.edges, []);
});

test('a bookstore name that is taken, in any case or spacing, is a CONFLICT', async () => {
  const name = `Client Test Books ${run}`;
  const created = await writer.mutate({ mutation: CreateBookstore, variables: { input: { name, city: 'Portland' } } });
  assert.equal(created.data?.createBookstore.name, name);

  await assert.rejects(
    writer.mutate({
      mutation: CreateBookstore,
      variables: { input: { name: `  client test  BOOKS ${run}`, city: 'Eugene' } },
    }),
    (error) => errorCode(error) === 'CONFLICT',
  );
});

/** The id of the book with exactly this title. */
async function idOf(title: string): Promise<string> {
  const { data } = await reader.query({ query: BooksPage, variables: { filter: { title }, first: 1 } });
  const id = data?.books.edges[0]?.node.id;
  assert.ok(id, `a book titled ${title}`);
  return id;
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (scripts/client-test sets it)`);
  return value;
}

/** One request and its answer, as the persisted-query test sees them on the wire. */
interface Exchange {
  method: string;
  query: string | undefined;
  hash: string | undefined;
  codes: string[];
}

/** A `fetch` that records what each request sent and which error codes came back. */
function recording(exchanges: Exchange[]): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    const sent = request.method === 'GET' ? fromUrl(new URL(request.url)) : await request.clone().json();
    const response = await fetch(request);
    const answer = await response.clone().json();
    exchanges.push({
      method: request.method,
      query: sent.query ?? undefined,
      hash: sent.extensions?.persistedQuery?.sha256Hash,
      codes: (answer.errors ?? []).map((error: GraphQLFormattedError) => error.extensions?.['code']),
    });
    return response;
  };
}

/** A GET request's parameters, read as the body a POST would have carried. */
function fromUrl(url: URL) {
  const extensions = url.searchParams.get('extensions');
  return { query: url.searchParams.get('query'), extensions: extensions ? JSON.parse(extensions) : undefined };
}
