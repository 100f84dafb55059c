// The oponn client a frontend would build: Apollo Client over HTTP with automatic persisted
// queries (APQ) and, for writers, the bearer token mutations need.
//
// With APQ a query goes out as the SHA-256 hash of its text, in a GET URL (short, and cacheable
// by a CDN). A server that does not know the hash answers PERSISTED_QUERY_NOT_FOUND; the link
// then sends text and hash together by POST, which registers the text for every later client.
// Mutations are always POSTed (the server refuses them over GET).
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

export interface ClientOptions {
  /** The GraphQL endpoint, such as `http://127.0.0.1:8080/graphql`. */
  url: string;
  /** A token from the server's `OPONN_API_TOKENS`; only mutations need one. */
  token?: string | undefined;
  /** The `fetch` to send requests with (a test passes one that records them). */
  fetch?: typeof fetch | undefined;
}

export function createClient({ url, token, fetch }: ClientOptions): ApolloClient {
  const persistedQueries = new PersistedQueryLink({ sha256, useGETForHashedQueries: true });
  const http = new HttpLink({
    uri: url,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    fetch,
  });
  return new ApolloClient({
    link: ApolloLink.from([persistedQueries, http]),
    cache: new InMemoryCache(),
  });
}

/** Hex SHA-256 with Web Crypto, which browsers and Node both have: no hashing package needed. */
export async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, '0')).join('');
}
