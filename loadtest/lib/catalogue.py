"""The ids the load tests draw from, read back from the running service.

    catalogue.py export --url URL --out FILE
        Reads every bookstore and every book of the service through GraphQL (keyset pages of
        100) and writes what the scenarios draw from: book ids, and each author's and each
        store's number of books. Works whatever seeded the database (loadtest/seed). Takes
        about 14 s per 100,000 books here, so loadtest/run keeps the file and checks it next
        time instead.

    catalogue.py check --url URL --file FILE --books N
        Exit 0 if FILE lists N books and the service holds a sample of them (200 ids, the first
        and the last): the database is the one the file was read from.

    catalogue.py warm --url URL --file FILE
        Reads every book of FILE through booksByIds (1,000 ids a request), which fills the entity
        cache: the scenarios start from a warm catalogue, as a service that has run a while.

Standard library only.
"""

import argparse
import json
import pathlib
import random
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


def found(url, ids):
    query = "query($ids: [ID!]!) { booksByIds(ids: $ids) { id } }"
    return sum(1 for book in graphql(url, query, {"ids": ids})["booksByIds"] if book)


def check(url, path, books):
    try:
        ids = json.loads(pathlib.Path(path).read_text())["books"]
    except (OSError, ValueError, KeyError):
        return False
    if len(ids) != books:
        return False
    sample = [ids[0], ids[-1]] + random.sample(ids, min(200, len(ids)))
    return all(found(url, sample[start:start + 100]) == len(sample[start:start + 100])
               for start in range(0, len(sample), 100))


def warm(url, path):
    ids = json.loads(pathlib.Path(path).read_text())["books"]
    present = sum(found(url, ids[start:start + 1000]) for start in range(0, len(ids), 1000))
    print(f"read {present} of {len(ids)} books through the entity cache", file=sys.stderr)
    if present != len(ids):
        raise SystemExit("some books of the catalogue file are gone")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("export")
    read.add_argument("--url", required=True)
    read.add_argument("--out", required=True)
    verify = commands.add_parser("check")
    verify.add_argument("--url", required=True)
    verify.add_argument("--file", required=True)
    verify.add_argument("--books", type=int, required=True)
    fill = commands.add_parser("warm")
    fill.add_argument("--url", required=True)
    fill.add_argument("--file", required=True)
    args = parser.parse_args()
    if args.command == "export":
        export(args.url, args.out)
    elif args.command == "check":
        sys.exit(0 if check(args.url, args.file, args.books) else 1)
    else:
        warm(args.url, args.file)


if __name__ == "__main__":
    main()
