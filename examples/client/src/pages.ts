// Reading a whole list: `books` answers a page at a time, and each page's
// `pageInfo.endCursor` is the `after` of the next, until `hasNextPage` is false.
import type { ApolloClient } from '@apollo/client';

import type { BookFilter, BooksPageQuery } from './generated/graphql';
import { BooksPage } from './operations';

export type BookPage = BooksPageQuery['books'];

/** Every page of the books matching `filter`, `pageSize` (1 to 100) books at a time. */
export async function* bookPages(
  client: ApolloClient,
  filter: BookFilter | null,
  pageSize: number,
): AsyncGenerator<BookPage> {
  let after: string | null = null;
  for (;;) {
    const page = await bookPage(client, filter, pageSize, after);
    yield page;
    if (!page.pageInfo.hasNextPage || page.pageInfo.endCursor == null) return;
    after = page.pageInfo.endCursor;
  }
}

async function bookPage(
  client: ApolloClient,
  filter: BookFilter | null,
  first: number,
  after: string | null,
): Promise<BookPage> {
  const { data } = await client.query({
    query: BooksPage,
    variables: { filter, first, after },
    // From the server, not Apollo's cache: pages cached at different times need not join up.
    fetchPolicy: 'network-only',
  });
  if (!data) throw new Error('a books page came back without data');
  return data.books;
}
