"""A deterministic catalogue for the load tests, and the ids of the one that is served.

    catalogue.py generate --books N --stores S --out DIR
        Writes DIR/stores.json and, per store, DIR/<store>/search-page-1.json in Open Library's
        search format (plus DIR/unstocked/ for the books in no store). `loadtest/seed` serves
        each folder with the local Open Library stand-in and ingests it with `--bookstore`, so
        the books go through the service's own bulk path. The same N and S always give the same
        books, authors and store sizes.

    catalogue.py create-stores --url URL --token TOKEN --dir DIR
        Creates the stores of DIR/stores.json through the createBookstore mutation (a store
        that exists already is kept: CONFLICT is expected on a second run).

    catalogue.py export --url URL --out FILE
        Reads every bookstore and every book of the running service through GraphQL (keyset
        pages of 100) and writes what the scenarios draw from: book ids, each author's and each
        store's number of books. Works whatever seeded the database.

Skew, like a real catalogue: store sizes follow a Zipf law (the largest store holds about
S/ln(S) times the median one), author popularity too (a few authors with hundreds of books,
a long tail with one), and 10% of books are in no store.
"""

import argparse
import json
import math
import pathlib
import random
import sys
import urllib.request

FIRST_NAMES = """Ada Alan Alice Amara Anne Arthur Beatrix Boris Carmen Chinua Clarice Dorothy
Edith Elena Emily Ernest Fatima Franz Gabriel George Hanna Haruki Helen Hermann Isabel Italo
Jane Jorge Kazuo Leo Louisa Mary Margaret Naguib Octavia Olga Orhan Pablo Primo Rabindranath
Ray Rosa Salman Sigrid Simone Toni Ursula Virginia Wislawa Yasunari Zadie""".split()
LAST_NAMES = """Achebe Adichie Allende Atwood Austen Borges Bradbury Bronte Calvino Camus
Carver Cervantes Christie Conrad Dickens Dostoevsky Eliot Faulkner Fitzgerald Flaubert Gaskell
Hemingway Hesse Homer Hugo Ishiguro Joyce Kafka Kawabata Lessing Levi Lispector Mahfouz Mann
Marquez Morrison Murakami Nabokov Orwell Pamuk Proust Rushdie Saramago Shelley Smith Steinbeck
Tagore Tolstoy Twain Undset Woolf Zola""".split()
ADJECTIVES = """Silent Broken Hidden Golden Last Lost Crimson Distant Forgotten Burning Quiet
Endless Winter Summer Secret Bitter Gentle Wandering Iron Glass Paper Hollow Northern Sunken
Restless Scarlet Ancient Little Long Bright""".split()
NOUNS = """River Garden House Road Sea Mountain City Letter Mirror Clock Island Forest Empire
Daughter Stranger Harbor Orchard Library Lantern Kingdom Bridge Tower Voyage Storm Archive
Station Feast Shadow Compass Chronicle""".split()
PLACES = """Lisbon Kyoto Prague Lagos Lima Oslo Cairo Dublin Istanbul Odessa Havana Tangier Vienna
Trieste Macondo Petersburg Alexandria Naples Bergen Kraków""".split()
SUBJECTS = """Fiction Fantasy History Romance Mystery Poetry Travel Science Philosophy Biography
Drama Adventure Classics Essays Memoir Mythology War Family Politics Nature""".split()
CITIES = """Portland Lisbon Berlin Osaka Toronto Austin Leeds Lyon Madrid Melbourne Boston Dublin
Prague Seattle Denver Bologna Utrecht Porto Krakow Chicago""".split()
STORE_WORDS = """Books Booksellers Bookshop Reads Pages Paperbacks Editions Library Stacks""".split()
UNSTOCKED_SHARE = 0.10


def zipf_weights(count, exponent):
    return [1.0 / (rank**exponent) for rank in range(1, count + 1)]


def apportion(total, weights, minimum=1):
    """Integer sizes proportional to `weights`, each at least `minimum`, summing to `total`."""
    scale = sum(weights)
    sizes = [max(minimum, int(total * weight / scale)) for weight in weights]
    rank = 0
    while sum(sizes) < total:
        sizes[rank % len(sizes)] += 1
        rank += 1
    while sum(sizes) > total:
        largest = max(range(len(sizes)), key=sizes.__getitem__)
        sizes[largest] -= 1
    return sizes


def authors(count, rng):
    names = set()
    while len(names) < count:
        names.add(f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}")
        if len(names) == len(FIRST_NAMES) * len(LAST_NAMES):
            break
    ordered = sorted(names)
    rng.shuffle(ordered)
    return ordered


def title(rng, number):
    shape = rng.randrange(4)
    if shape == 0:
        text = f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    elif shape == 1:
        text = f"{rng.choice(NOUNS)} of {rng.choice(PLACES)}"
    elif shape == 2:
        text = f"A {rng.choice(NOUNS)} in {rng.choice(PLACES)}"
    else:
        text = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}s"
    # Real catalogues repeat titles; a volume number keeps most of them apart.
    return text if number % 7 else f"{text}, Volume {number % 5 + 1}"


def generate(book_count, store_count, out):
    rng = random.Random(20261127)
    author_pool = authors(max(20, book_count // 20), rng)
    author_weights = zipf_weights(len(author_pool), 1.1)
    stocked = book_count - int(book_count * UNSTOCKED_SHARE)
    store_sizes = apportion(stocked, zipf_weights(store_count, 1.0))
    stores = []
    used_names = set()
    for index, size in enumerate(store_sizes):
        while True:
            name = f"{rng.choice(LAST_NAMES)} {rng.choice(STORE_WORDS)} {index + 1}"
            if name not in used_names:
                used_names.add(name)
                break
        stores.append({"folder": f"store-{index + 1:04d}", "name": name,
                       "city": rng.choice(CITIES), "books": size})
    stores.append({"folder": "unstocked", "name": None, "city": None,
                   "books": book_count - stocked})
    out.mkdir(parents=True, exist_ok=True)
    number = 0
    for store in stores:
        docs = []
        for _ in range(store["books"]):
            number += 1
            first = rng.choices(author_pool, author_weights)[0]
            names = [first] if rng.random() < 0.85 else [first, rng.choice(author_pool)]
            docs.append({
                "key": f"/works/OL{50_000_000 + number}W",
                "title": title(rng, number),
                "author_name": list(dict.fromkeys(names)),
                "first_publish_year": rng.randrange(1800, 2025),
                "subject": rng.sample(SUBJECTS, rng.randrange(1, 4)),
            })
        folder = out / store["folder"]
        folder.mkdir(exist_ok=True)
        page = {"numFound": len(docs), "start": 0, "numFoundExact": True, "docs": docs}
        (folder / "search-page-1.json").write_text(json.dumps(page))
    (out / "stores.json").write_text(json.dumps(stores, indent=1))
    print(f"generated {book_count} books over {store_count} stores in {out}", file=sys.stderr)


def graphql(url, query, variables=None, token=None, allowed_codes=()):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, body, headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    errors = [error for error in answer.get("errors") or []
              if error.get("extensions", {}).get("code") not in allowed_codes]
    if errors:
        raise SystemExit(f"GraphQL errors: {errors}")
    return answer.get("data")


def create_stores(url, token, folder):
    created = 0
    for store in json.loads((folder / "stores.json").read_text()):
        if store["name"] is None:
            continue
        data = graphql(url, """mutation($input: CreateBookstoreInput!) {
            createBookstore(input: $input) { id } }""",
                       {"input": {"name": store["name"], "city": store["city"]}},
                       token=token, allowed_codes=("CONFLICT",))
        created += 1 if data else 0
    print(f"created {created} bookstores (the others existed)", file=sys.stderr)


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
    make = commands.add_parser("generate")
    make.add_argument("--books", type=int, required=True)
    make.add_argument("--stores", type=int, required=True)
    make.add_argument("--out", type=pathlib.Path, required=True)
    stores = commands.add_parser("create-stores")
    stores.add_argument("--url", required=True)
    stores.add_argument("--token", required=True)
    stores.add_argument("--dir", type=pathlib.Path, required=True)
    read = commands.add_parser("export")
    read.add_argument("--url", required=True)
    read.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.books, args.stores, args.out)
    elif args.command == "create-stores":
        create_stores(args.url, args.token, args.dir)
    else:
        export(args.url, args.out)


if __name__ == "__main__":
    main()
