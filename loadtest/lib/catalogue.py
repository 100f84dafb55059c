"""The ids the load tests draw from, read back from the running service.

    catalogue.py export --url URL --out FILE

Reads every bookstore and every book of the service through GraphQL (keyset pages of 100) and
writes what the scenarios draw from: book ids, and each author's and each store's number of
books. Works whatever seeded the database (loadtest/seed). Standard library only.
"""

import argparse
import json
import pathlib
import sys
import urllib.request


def graphql(url, query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise SystemExit(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def every_node(url, field, selection):
    query = f"""query($after: String) {{ {field}(first: 100, after: $after) {{
        nodes {{ {selection} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
    after = None
    while True:
        page = graphql(url, query, {"after": after})[field]
        yield from page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return
        after = page["pageInfo"]["endCursor"]


def export(url, out):
    stores = {node["id"]: 0 for node in every_node(url, "bookstores", "id")}
    books, by_author = [], {}
    for node in every_node(url, "books", "id authors bookstoreId"):
        books.append(node["id"])
        for author in node["authors"]:
            by_author[author] = by_author.get(author, 0) + 1
        if node["bookstoreId"] in stores:
            stores[node["bookstoreId"]] += 1
    if not books:
        raise SystemExit("the service holds no books: seed it first")
    catalogue = {
        "books": books,
        "authors": sorted(([name, count] for name, count in by_author.items()),
                          key=lambda pair: (-pair[1], pair[0])),
        "stores": sorted(([store, count] for store, count in stores.items() if count),
                         key=lambda pair: (-pair[1], pair[0])),
    }
    pathlib.Path(out).write_text(json.dumps(catalogue))
    print(f"exported {len(books)} books, {len(catalogue['authors'])} authors, "
          f"{len(catalogue['stores'])} stocked stores to {out}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("export")
    read.add_argument("--url", required=True)
    read.add_argument("--out", required=True)
    args = parser.parse_args()
    export(args.url, args.out)


if __name__ == "__main__":
    main()
