// The operations this client sends. GraphQL Code Generator reads every `graphql(...)` document
// here and types it (src/generated/), so each constant below is a TypedDocumentNode: Apollo
// infers the variables it needs and the shape of its data from it.
import { graphql } from './generated';

export const BookFields = graphql(`
  fragment BookFields on Book {
    id
    sourceKey
    title
    authors
    firstPublishYear
    bookstoreId
    version
    updatedAt
  }
`);

export const BookById = graphql(`
  query BookById($id: ID!) {
    book(id: $id) {
      ...BookFields
    }
  }
`);

export const BooksByIds = graphql(`
  query BooksByIds($ids: [ID!]!) {
    booksByIds(ids: $ids) {
      id
      title
    }
  }
`);

// One page of a filtered list. Relay connections: each edge carries its cursor, and pageInfo
// says whether more follow and where to read on (`after: endCursor`).
export const BooksPage = graphql(`
  query BooksPage($filter: BookFilter, $first: Int!, $after: String) {
    books(filter: $filter, first: $first, after: $after) {
      edges {
        cursor
        node {
          id
          title
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const CreateBook = graphql(`
  mutation CreateBook($input: CreateBookInput!) {
    createBook(input: $input) {
      ...BookFields
    }
  }
`);

// `expectedVersion` makes the update conditional: CONFLICT if someone wrote the book since.
export const UpdateBook = graphql(`
  mutation UpdateBook($id: ID!, $input: UpdateBookInput!, $expectedVersion: Int) {
    updateBook(id: $id, input: $input, expectedVersion: $expectedVersion) {
      ...BookFields
    }
  }
`);

export const CreateBookstore = graphql(`
  mutation CreateBookstore($input: CreateBookstoreInput!) {
    createBookstore(input: $input) {
      id
      name
      city
      version
    }
  }
`);
