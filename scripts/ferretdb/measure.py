#!/usr/bin/env python3
"""Measures the service's access patterns on a MongoDB-wire server, at the wire (pymongo).

    measure.py seed URI [--books 100000] [--db oponn_measure]
        book-shaped documents (BookDocument of app/src/store/books.rs, distributed like
        `oponn seed --generate`: skewed authors and stores) and the service's indexes
        (`ensure_indexes`), inserted in batches of 1,000 into a database of its own; plus a
        small `shapes` collection of documents of every BSON type FerretDB v1 stores
        (recreated; --books 0 recreates only it)
    measure.py bench URI [URI ...] [--db ...] [--rounds 5] [--reps 200]
        p50/p99 in ms of: find({_id: {$in: 100 random ids}}) fully iterated, find_one({_id}),
        find_one then a find_one_and_update({_id, version}), and an author list page sorted by
        title then _id, limit 21. With several URIs (e.g. one server unpatched, one patched, on
        the same PostgreSQL database), rounds alternate between them so machine noise falls on
        both alike; each round runs every operation `reps / rounds` times per URI
    measure.py compare URI_A URI_B [--db ...]
        the raw BSON bytes of each server's answers to a set of queries (batched reads, list
        pages, keyset pages, regex prefixes, sorts of every kind, the `shapes` documents),
        compared byte for byte; exits 1 on a difference

Needs pymongo (pip install pymongo). Writes only to the database it is given (bench and compare
update `updatedAt`/`version` or rewrite titles of a few books). Two FerretDB processes may serve
one PostgreSQL database, as the comparison needs; start them after `seed` (each caches the
collections' metadata when it first sees them). Never point this at the stack's server.
"""

import argparse
import bisect
import datetime
import hashlib
import random
import statistics
import sys
import time

import bson
from bson.raw_bson import RawBSONDocument
from bson.codec_options import CodecOptions
import pymongo
from pymongo import ReturnDocument

FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret",
         "Niklaus", "Leslie", "Tony", "Radia", "Ken", "Dennis", "Shafi", "Judea", "Sophie",
         "Adele", "Ivan", "Karen", "Robin", "Butler", "Fran", "Jean", "Kristen", "Ole", "Peter"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy",
        "Hamilton", "Wirth", "Lamport", "Hoare", "Perlman", "Thompson", "Ritchie", "Goldwasser",
        "Pearl", "Wilson", "Goldberg", "Sutherland", "Atwood", "Roy", "Eco", "Mann", "Kafka",
        "Orwell", "Huxley", "Tokarczuk"]
ADJ = ["Silent", "Hidden", "Last", "Broken", "Golden", "Secret", "Lost", "Dark", "Bright",
       "Wild", "Forgotten", "Burning", "Winter", "Crimson", "Endless"]
NOUN = ["River", "Garden", "House", "Mountain", "Letter", "Island", "Mirror", "Forest", "City",
        "Road", "Night", "Storm", "Voyage", "Empire", "Orchard", "Harbor", "Library", "Clock"]
PLACE = ["Lisbon", "Kyoto", "the North", "Samarkand", "Avalon", "the Sea", "Prague", "Dust"]
SUBJ = ["Fiction", "Fantasy", "Science fiction", "History", "Poetry", "Romance", "Mystery",
        "Biography", "Travel", "Philosophy", "Children's stories", "Adventure", "Humor", "War",
        "Politics", "Art", "Music", "Nature", "Cooking", "Religion", "Science", "Mathematics",
        "Drama", "Short stories", "Essays", "Letters", "Myths", "Horror", "Crime", "Family"]


def cumulative(n, skew=0.8):
    total, out = 0.0, []
    for rank in range(n):
        total += 1.0 / (rank + 1) ** skew
        out.append(total)
    return out


def draw(rng, cum):
    return min(bisect.bisect_left(cum, rng.random() * cum[-1]), len(cum) - 1)


def title(rng):
    a, n, o = rng.choice(ADJ), rng.choice(NOUN), rng.choice(NOUN)
    base = [f"The {a} {n}", f"The {n} of {rng.choice(PLACE)}", f"{n} and {o}",
            f"A {a} {n} in {rng.choice(PLACE)}", f"{a} {n}s", f"The {n}"][rng.randrange(6)]
    r = rng.randrange(10)
    return base + ": A Novel" if r == 0 else f"{base}, Volume {rng.randrange(1, 6)}" if r == 1 else base


def authors_pool(size):
    out = []
    for n in range(size):
        first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
        rnd = n // (len(FIRST) * len(LAST))
        out.append(f"{first} {last}" if rnd == 0 else f"{first} {chr(65 + (rnd - 1) % 20)}. {last} {rnd}")
    return out


def shapes():
    """Documents of every BSON type FerretDB v1 stores, nested too."""
    oid = bson.ObjectId("5f1e2d3c4b5a697887960504")
    now = datetime.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=datetime.timezone.utc)
    values = [
        None, True, False, 0, -1, 2**31 - 1, -2**31, bson.Int64(0), bson.Int64(2**62),
        bson.Int64(-2**63), 0.0, -0.0, 1.5, 1e308, -1e-308, "",
        "é\u00e9\u4e2d\U0001F600", "x" * 300, oid, now,
        datetime.datetime(1960, 1, 1, tzinfo=datetime.timezone.utc),
        bson.Binary(b"\x00\x01\xff", 0), bson.Binary(b"", 128), bson.Regex("^a.b$", "im"),
        bson.Timestamp(1700000000, 7), bson.Int64(1), 42, {"a": 1, "b": {"c": [1, "2", None]}},
        {}, [], [1, 2.5, "three", oid, {"k": "v"}], ["Ada Lovelace", "Alan Turing"],
        {"s$": "key", "p": {"x$": 1}}, {"s": "key", "nested": {"deeper": {"deepest": [True, None]}}},
        {"z": 1, "a": 2, "m": 3}, 'quote " backslash \\ slash / controls \x01\x1f\n\t end',
        "\u2028\u2029 <&> \ufffd", {'k"ey': 1, "back\\slash": {"tab\tkey": "v", "é": [1, ""]}},
    ]
    docs = []
    for i, v in enumerate(values):
        tail = {"v": v} if isinstance(v, list) else [v, {"v": v}]  # nested arrays are refused
        docs.append({"_id": i, "title": v, "v": v, "tail": tail, "n": i})
    docs.append({"_id": oid, "title": "oid id", "v": 1})
    docs.append({"_id": "string id", "title": None})
    docs.append({"_id": bson.Int64(7) + 100, "no_title": True})
    docs.append({"_id": 3.25, "title": "double id", "order": {"b": 1, "a": 2}})
    docs.append({"title": "_id last", "_id": "last"})
    docs.append({"_id": {"b": 1, "a": "x"}, "title": "document id"})
    return docs


def seed(args):
    client = pymongo.MongoClient(args.uri)
    db = client[args.db]
    rng = random.Random(20240229)
    pool = authors_pool(max(1, (args.books + 7) // 8))
    cum = cumulative(len(pool))
    stores = [bson.ObjectId() for _ in range(500)]
    store_cum = cumulative(len(stores))
    books = db.books
    started = time.time()
    batch = []
    for n in range(args.books):
        key = f"/works/OL{9_000_000 + n}W"
        doc = {
            "_id": bson.ObjectId(hashlib.sha1(key.encode()).digest()[:12]),
            "sourceKey": key,
            "title": title(rng),
            "authors": [pool[draw(rng, cum)] for _ in range([1, 1, 1, 1, 1, 2, 2, 3][rng.randrange(8)])],
            "firstPublishYear": rng.randrange(1850, 2025),
            "subjects": [rng.choice(SUBJ) for _ in range(rng.randrange(1, 4))],
            "bookstoreId": stores[draw(rng, store_cum)],
            "version": bson.Int64(1),
            "updatedAt": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
            + datetime.timedelta(milliseconds=rng.randrange(10**10)),
        }
        batch.append(doc)
        if len(batch) == 1000:
            books.insert_many(batch, ordered=False)
            batch = []
            if (n + 1) % 10000 == 0:
                print(f"{n + 1} books, {time.time() - started:.0f} s", file=sys.stderr)
    if batch:
        books.insert_many(batch, ordered=False)
    books.create_index([("sourceKey", 1)], name="sourceKey_unique", unique=True)
    for first in ("title", "authors", "subjects", "bookstoreId"):
        keys = [(first, 1), ("title", 1), ("_id", 1)] if first != "title" else [("title", 1), ("_id", 1)]
        books.create_index(keys, name=f"{first}_title_id" if first != "title" else "title_id")
    db.shapes.drop()
    db.shapes.insert_many(shapes())
    print(f"seeded {args.books} books in {time.time() - started:.0f} s", file=sys.stderr)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def bench(args):
    clients = [pymongo.MongoClient(u) for u in args.uris]
    colls = [c[args.db].books for c in clients]
    ids = [d["_id"] for d in colls[0].find({}, {"_id": 1})]
    authors = [d["authors"][0] for d in colls[0].find({}, {"authors": 1}).limit(2000)]
    rng = random.Random(7)
    ops = {
        "find({_id: {$in: 100 ids}})": lambda c: list(c.find({"_id": {"$in": rng.sample(ids, 100)}})),
        "find_one({_id})": lambda c: c.find_one({"_id": rng.choice(ids)}),
        "find_one, then find_one_and_update({_id, version})": lambda c: (
            lambda d: c.find_one_and_update(
                {"_id": d["_id"], "version": d["version"]},
                {"$set": {"updatedAt": datetime.datetime.now(datetime.timezone.utc)},
                 "$inc": {"version": 1}}, return_document=ReturnDocument.AFTER)
        )(c.find_one({"_id": rng.choice(ids)})),
        "author page, sort title, _id, limit 21": lambda c: list(
            c.find({"authors": rng.choice(authors)}).sort([("title", 1), ("_id", 1)]).limit(21)),
    }
    for c in colls:  # warm up
        for op in ops.values():
            for _ in range(5):
                op(c)
    times = {(name, i): [] for name in ops for i in range(len(colls))}
    per_round = max(1, args.reps // args.rounds)
    for _ in range(args.rounds):
        for i, c in enumerate(colls):
            for name, op in ops.items():
                for _ in range(per_round):
                    t = time.perf_counter()
                    op(c)
                    times[(name, i)].append((time.perf_counter() - t) * 1000)
    print("| operation | " + " | ".join(f"{u} p50 / p99 (ms)" for u in args.uris) + " |")
    print("|---|" + "---:|" * len(colls))
    for name in ops:
        cells = [f"{statistics.median(times[(name, i)]):.2f} / {pct(times[(name, i)], 99):.2f}"
                 for i in range(len(colls))]
        print(f"| `{name}` | " + " | ".join(cells) + " |")


def compare(args):
    raw = CodecOptions(document_class=RawBSONDocument)
    a, b = (pymongo.MongoClient(u)[args.db] for u in (args.uri_a, args.uri_b))
    books_a = a.get_collection("books", codec_options=raw)
    books_b = b.get_collection("books", codec_options=raw)
    ids = [d["_id"] for d in a.books.find({}, {"_id": 1}).sort("_id", 1)]
    authors = sorted({x for d in a.books.find({}, {"authors": 1}).limit(3000) for x in d["authors"]})
    titles = sorted({d["title"] for d in a.books.find({}, {"title": 1}).limit(2000)})
    rng = random.Random(11)
    queries = []  # (collection name, filter, sort, limit, skip, projection)
    for _ in range(40):
        queries.append(("books", {"_id": {"$in": rng.sample(ids, 100)}}, None, 0, 0, None))
    queries.append(("books", {"_id": {"$in": rng.sample(ids, 100) + [bson.ObjectId(), 5, "x"]}}, None, 0, 0, None))
    for _ in range(40):
        queries.append(("books", {"_id": rng.choice(ids)}, None, 0, 0, None))
    for _ in range(30):
        au = rng.choice(authors)
        queries.append(("books", {"authors": au}, [("title", 1), ("_id", 1)], 21, 0, None))
        queries.append(("books", {"$and": [{"authors": au}]}, [("title", 1), ("_id", 1)], 0, 0, None))
        t = rng.choice(titles)
        queries.append(("books", {"$and": [{"authors": au}, {"$or": [{"title": {"$gt": t}}, {
            "title": t, "_id": {"$gt": rng.choice(ids)}}]}]}, [("title", 1), ("_id", 1)], 21, 0, None))
    for p in ("The", "A Si", "Lost", "Zzz", "The Golden Ri"):
        queries.append(("books", {"title": {"$regex": "^" + p}}, [("title", 1), ("_id", 1)], 21, 3, None))
    queries.append(("books", {}, [("title", 1), ("_id", 1)], 21, 0, None))
    queries.append(("books", {"_id": {"$in": ids[:200]}}, None, 0, 0, {"title": 1, "authors": 1}))
    queries.append(("books", {"_id": {"$in": ids[:200]}}, None, 0, 0, {"authors": 0, "_id": 0}))
    queries.append(("books", {"firstPublishYear": {"$gte": 2000}, "_id": {"$in": ids[:500]}}, [("_id", -1)], 0, 0, None))
    queries.append(("books", {}, [("_id", 1)], 2000, 0, None))
    queries.append(("books", {}, None, 0, 0, None))  # every book, storage order
    for sort in (None, [("_id", 1)], [("title", 1), ("_id", 1)], [("title", -1), ("_id", 1)], [("v", 1)]):
        for f in ({}, {"title": {"$exists": True}}, {"n": {"$in": [1, 2, 3, 20, 30]}}, {"v": {"$gte": 0}}):
            queries.append(("shapes", f, sort, 0, 0, None))
    queries.append(("shapes", {}, None, 0, 0, {"tail": 1}))
    queries.append(("shapes", {}, None, 0, 0, {"v": 0}))
    pipelines = [
        ("books", [{"$match": {"authors": authors[0]}}, {"$sort": {"title": 1, "_id": 1}}]),
        ("books", [{"$group": {"_id": "$firstPublishYear", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]),
        ("books", [{"$match": {"_id": {"$in": ids[:300]}}}, {"$project": {"title": 1, "subjects": 1}}]),
        ("shapes", [{"$sort": {"_id": 1}}]),
        ("shapes", [{"$project": {"v": 1, "n": 1}}, {"$sort": {"n": -1}}]),
    ]
    differ = 0
    for coll, pipeline in pipelines:
        answers = [[d.raw for d in db.get_collection(coll, codec_options=raw).aggregate(pipeline)] for db in (a, b)]
        if answers[0] != answers[1]:
            differ += 1
            print(f"DIFFERENT: aggregate {coll} {pipeline}")
    for coll, kw in (("books", {"filter": {"_id": {"$in": ids[:50]}}}), ("shapes", {"sort": [("n", 1)]}),
                     ("books", {"filter": {"authors": authors[2]}, "sort": [("title", 1), ("_id", 1)], "limit": 5})):
        answers = [[d.raw for d in db.get_collection(coll, codec_options=raw).find(show_record_id=True, **kw)]
                   for db in (a, b)]
        if answers[0] != answers[1]:
            differ += 1
            print(f"DIFFERENT: showRecordId {coll} {kw}")
    for coll, f in (("books", {"authors": authors[1]}), ("books", {}), ("shapes", {"v": {"$type": "string"}})):
        counts = [db[coll].count_documents(f) for db in (a, b)]
        distinct = [sorted(map(repr, db[coll].distinct("title", f))) for db in (a, b)]
        if counts[0] != counts[1] or distinct[0] != distinct[1]:
            differ += 1
            print(f"DIFFERENT: count or distinct {coll} {f}")
    for coll, f, sort, limit, skip, proj in queries:
        answers = []
        for db in (a, b):
            cur = db.get_collection(coll, codec_options=raw).find(f, proj, limit=limit, skip=skip)
            if sort:
                cur = cur.sort(sort)
            answers.append([d.raw for d in cur])
        if answers[0] != answers[1]:
            differ += 1
            same_set = sorted(answers[0]) == sorted(answers[1])
            print(f"DIFFERENT ({'order only' if same_set else 'content'}): {coll} {f} {sort} {limit} {skip} {proj}")
    # findAndModify answers, on documents both sides see: a then b update the same document
    for _ in range(20):
        oid = rng.choice(ids)
        outs = []
        for coll in (books_a, books_b):
            d = coll.find_one({"_id": oid})
            outs.append(coll.find_one_and_update({"_id": oid, "version": d["version"]},
                                                 {"$set": {"title": d["title"]}},
                                                 return_document=ReturnDocument.AFTER).raw)
        if outs[0] != outs[1]:
            differ += 1
            print(f"DIFFERENT findAndModify of {oid}")
    total = len(queries) + 20 + len(pipelines) + 3 + 3
    print(f"{total} queries compared, {differ} differ")
    sys.exit(1 if differ else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("uri")
    s.add_argument("--books", type=int, default=100_000)
    s.add_argument("--db", default="oponn_measure")
    b = sub.add_parser("bench")
    b.add_argument("uris", nargs="+")
    b.add_argument("--db", default="oponn_measure")
    b.add_argument("--rounds", type=int, default=5)
    b.add_argument("--reps", type=int, default=200)
    c = sub.add_parser("compare")
    c.add_argument("uri_a")
    c.add_argument("uri_b")
    c.add_argument("--db", default="oponn_measure")
    args = ap.parse_args()
    {"seed": seed, "bench": bench, "compare": compare}[args.cmd](args)


if __name__ == "__main__":
    main()
