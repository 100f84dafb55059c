//! The MongoDB contract: what the store layer (`app/src/store`) assumes of its server, checked
//! against whatever `scripts/stack` started (a real `mongod` when one is on `PATH`, else FerretDB
//! v1 on PostgreSQL with the pushdown patch of `scripts/ferretdb/`). Each test works in a
//! database of its own and drops it.
//!
//! Where the local server differs from MongoDB, the test says so and names the store's
//! workaround. Known differences of FerretDB v1:
//! - an update refused by a unique index answers code 1 (InternalError) with the storage's own
//!   text, not 11000 (inserts answer 11000): `store/error.rs` maps both texts to `Duplicate`;
//! - `$in` results come in storage order, MongoDB's in index order: neither is promised, and
//!   the store never relies on one (it keys results by `_id`);
//! - nested arrays are refused (code 2): the service stores none;
//! - unpatched, FerretDB on PostgreSQL let several concurrent `findAndModify` of one version
//!   all apply: the patch serializes read-then-write commands per collection (see
//!   `scripts/ferretdb/pushdown.patch`), and the race test below fails without it.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and figures are printed"
)]

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, Document},
    error::{ErrorKind, WriteFailure},
    options::ReturnDocument,
    Client, Collection, Database,
};
use oponn_tests::{unique_name, Stack};

/// MongoDB's code for a unique-index violation.
const DUPLICATE_KEY: i32 = 11000;

/// A database of the test's own, dropped by [`Scratch::drop`].
struct Scratch {
    database: Database,
}

impl Scratch {
    async fn new() -> Self {
        let stack = Stack::from_env();
        let client = Client::with_uri_str(&stack.mongodb_uri)
            .await
            .expect("MONGODB_URI parses");
        Self {
            database: client.database(&unique_name("contract")),
        }
    }

    fn collection(&self, name: &str) -> Collection<Document> {
        self.database.collection(name)
    }

    async fn drop(self) {
        self.database.drop().await.expect("drop the test database");
    }
}

async fn all(collection: &Collection<Document>, filter: Document, sort: Document) -> Vec<Document> {
    collection
        .find(filter)
        .sort(sort)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read the cursor")
}

async fn unique_index(collection: &Collection<Document>, field: &str) {
    let index = mongodb::IndexModel::builder()
        .keys(doc! { field: 1 })
        .options(
            mongodb::options::IndexOptions::builder()
                .name(format!("{field}_unique"))
                .unique(true)
                .build(),
        )
        .build();
    collection
        .create_index(index)
        .await
        .expect("create the index");
}

#[tokio::test]
async fn find_one_and_update_applies_only_to_the_version_it_names() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    let id = ObjectId::new();
    books
        .insert_one(doc! { "_id": id, "title": "Dune", "version": 1_i64 })
        .await
        .unwrap();

    let after = books
        .find_one_and_update(
            doc! { "_id": id, "version": 1_i64 },
            doc! { "$set": { "title": "Dune Messiah" }, "$inc": { "version": 1_i64 } },
        )
        .return_document(ReturnDocument::After)
        .await
        .unwrap()
        .expect("version 1 is current: the update applies");
    assert_eq!(after.get_i64("version").unwrap(), 2);
    assert_eq!(after.get_str("title").unwrap(), "Dune Messiah");

    let stale = books
        .find_one_and_update(
            doc! { "_id": id, "version": 1_i64 },
            doc! { "$set": { "title": "lost" }, "$inc": { "version": 1_i64 } },
        )
        .await
        .unwrap();
    assert!(stale.is_none(), "a stale version matches nothing");
    let stored = books.find_one(doc! { "_id": id }).await.unwrap().unwrap();
    assert_eq!(stored.get_str("title").unwrap(), "Dune Messiah");
    scratch.drop().await;
}

#[tokio::test]
async fn an_insert_refused_by_a_unique_index_is_error_11000() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    unique_index(&books, "sourceKey").await;
    books
        .insert_one(doc! { "sourceKey": "/works/OL1W" })
        .await
        .unwrap();

    let error = books
        .insert_one(doc! { "sourceKey": "/works/OL1W" })
        .await
        .expect_err("the key is taken");
    let code = match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code,
        other => panic!("expected a write error, got {other:?}"),
    };
    assert_eq!(code, DUPLICATE_KEY);
    scratch.drop().await;
}

#[tokio::test]
async fn an_update_refused_by_a_unique_index_is_a_duplicate_key_error() {
    let scratch = Scratch::new().await;
    let stores = scratch.collection("bookstores");
    unique_index(&stores, "nameKey").await;
    let id = ObjectId::new();
    stores
        .insert_many([
            doc! { "nameKey": "powell's books" },
            doc! { "_id": id, "nameKey": "city lights" },
        ])
        .await
        .unwrap();

    let error = stores
        .find_one_and_update(
            doc! { "_id": id },
            doc! { "$set": { "nameKey": "powell's books" } },
        )
        .await
        .expect_err("the name is taken");
    match error.kind.as_ref() {
        ErrorKind::Command(command) if command.code == DUPLICATE_KEY => {}
        // FerretDB v1 differs: code 1 with its storage's text; store/error.rs maps exactly
        // these texts to `StoreError::Duplicate`.
        ErrorKind::Command(command) if command.code == 1 => assert!(
            command
                .message
                .contains("duplicate key value violates unique constraint")
                || command.message.contains("UNIQUE constraint failed"),
            "an unknown text for a unique violation: {}",
            command.message
        ),
        other => panic!("expected a duplicate-key error, got {other:?}"),
    }
    let unchanged = stores.find_one(doc! { "_id": id }).await.unwrap().unwrap();
    assert_eq!(unchanged.get_str("nameKey").unwrap(), "city lights");
    scratch.drop().await;
}

#[tokio::test]
async fn in_finds_every_listed_id_in_no_promised_order() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    let ids: Vec<ObjectId> = (0..50).map(|_| ObjectId::new()).collect();
    let documents: Vec<Document> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| doc! { "_id": id, "title": format!("Book {n}") })
        .collect();
    books.insert_many(documents).await.unwrap();

    let mut asked: Vec<ObjectId> = ids.iter().step_by(3).rev().copied().collect();
    asked.push(ObjectId::new()); // missing: simply absent from the answer
    let found: Vec<ObjectId> = books
        .find(doc! { "_id": { "$in": &asked } })
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_object_id("_id").unwrap())
        .collect();
    // The store keys results by `_id` and never relies on their order.
    let found: HashSet<ObjectId> = found.into_iter().collect();
    let wanted: HashSet<ObjectId> = ids.iter().step_by(3).copied().collect();
    assert_eq!(found, wanted);
    scratch.drop().await;
}

/// The store's keyset condition: strictly after (`title`, `_id`), with the implied bound on
/// `title` that lets a server start its index scan at the cursor.
fn after(title: &str, id: ObjectId) -> Document {
    doc! { "$and": [
        { "title": { "$gte": title } },
        { "$or": [
            { "title": { "$gt": title } },
            { "title": title, "_id": { "$gt": id } },
        ] },
    ] }
}

#[tokio::test]
async fn keyset_pages_walk_title_then_id_bytewise_without_gaps_or_repeats() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    let titles = [
        "b", "B", "a", "Zebra", "apple", "é", "e", "a", "", "Dune", "a", "dune",
    ];
    let documents: Vec<Document> = titles
        .iter()
        .cycle()
        .take(40)
        .map(|title| doc! { "_id": ObjectId::new(), "title": *title, "authors": ["X"] })
        .collect();
    books.insert_many(documents.clone()).await.unwrap();

    // MongoDB compares strings by their UTF-8 bytes (no collation): "Zebra" < "a" < "é".
    let mut expected: Vec<(String, ObjectId)> = documents
        .iter()
        .map(|d| {
            (
                d.get_str("title").unwrap().to_owned(),
                d.get_object_id("_id").unwrap(),
            )
        })
        .collect();
    expected.sort();

    let filter = doc! { "$and": [{ "authors": "X" }] };
    let mut walked = Vec::new();
    let mut cursor: Option<(String, ObjectId)> = None;
    loop {
        let page_filter = match &cursor {
            None => filter.clone(),
            Some((title, id)) => doc! { "$and": [filter.clone(), after(title, *id)] },
        };
        let page: Vec<Document> = books
            .find(page_filter)
            .sort(doc! { "title": 1, "_id": 1 })
            .limit(7)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let keys: Vec<(String, ObjectId)> = page
            .iter()
            .map(|d| {
                (
                    d.get_str("title").unwrap().to_owned(),
                    d.get_object_id("_id").unwrap(),
                )
            })
            .collect();
        walked.extend(keys.iter().cloned());
        if keys.len() < 7 {
            break;
        }
        cursor = keys.last().cloned();
    }
    assert_eq!(walked, expected);
    scratch.drop().await;
}

#[tokio::test]
async fn equality_on_an_array_field_matches_any_element() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    books
        .insert_many([
            doc! { "_id": 1, "authors": ["Terry Pratchett", "Neil Gaiman"] },
            doc! { "_id": 2, "authors": ["Neil Gaiman"] },
            doc! { "_id": 3, "authors": "Neil Gaiman" },
            // (FerretDB v1 refuses nested arrays; the service never stores one.)
            doc! { "_id": 4, "authors": [{ "name": "Neil Gaiman" }] },
            doc! { "_id": 5, "authors": ["Terry Pratchett"] },
            doc! { "_id": 6 },
        ])
        .await
        .unwrap();

    let found = all(&books, doc! { "authors": "Neil Gaiman" }, doc! { "_id": 1 }).await;
    let ids: Vec<i32> = found.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    // Elements match, a scalar matches, a field of an element does not.
    assert_eq!(ids, [1, 2, 3]);
    scratch.drop().await;
}

#[tokio::test]
async fn object_ids_round_trip_compare_by_bytes_and_never_equal_their_hex_text() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    let mut ids: Vec<ObjectId> = (0..20).map(|_| ObjectId::new()).collect();
    books
        .insert_many(ids.iter().map(|id| doc! { "_id": id, "ref": id }))
        .await
        .unwrap();
    ids.sort();

    let found = all(&books, doc! { "_id": { "$gt": ids[9] } }, doc! { "_id": 1 }).await;
    let found: Vec<ObjectId> = found
        .iter()
        .map(|d| d.get_object_id("_id").unwrap())
        .collect();
    assert_eq!(found, ids[10..]);

    let by_text = books
        .find_one(doc! { "_id": ids[0].to_hex() })
        .await
        .unwrap();
    assert!(by_text.is_none(), "a string never equals an ObjectId");
    let stored = books
        .find_one(doc! { "_id": ids[0] })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_object_id("ref").unwrap(), ids[0]);
    scratch.drop().await;
}

#[tokio::test]
async fn an_unordered_insert_many_inserts_all_but_the_duplicates_and_names_them() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    unique_index(&books, "sourceKey").await;
    books.insert_one(doc! { "sourceKey": "k2" }).await.unwrap();

    let batch: Vec<Document> = ["k1", "k2", "k3", "k3", "k4"]
        .iter()
        .map(|key| doc! { "sourceKey": *key })
        .collect();
    let error = books
        .insert_many(batch)
        .ordered(false)
        .await
        .expect_err("two duplicates");
    let ErrorKind::InsertMany(insert) = error.kind.as_ref() else {
        panic!("expected an insert-many error, got {error:?}");
    };
    let mut refused: Vec<(usize, i32)> = insert
        .write_errors
        .as_ref()
        .expect("write errors")
        .iter()
        .map(|e| (e.index, e.code))
        .collect();
    refused.sort();
    assert_eq!(refused, [(1, DUPLICATE_KEY), (3, DUPLICATE_KEY)]);
    let stored = all(&books, doc! {}, doc! { "sourceKey": 1 }).await;
    let keys: Vec<&str> = stored
        .iter()
        .map(|d| d.get_str("sourceKey").unwrap())
        .collect();
    assert_eq!(keys, ["k1", "k2", "k3", "k4"]);
    scratch.drop().await;
}

#[tokio::test]
async fn of_concurrent_conditional_updates_of_one_version_exactly_one_wins() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    let id = ObjectId::new();
    books
        .insert_one(doc! { "_id": id, "version": 1_i64 })
        .await
        .unwrap();

    for round in 1..=5_i64 {
        let tasks: Vec<_> = (0..12)
            .map(|writer| {
                let books = books.clone();
                tokio::spawn(async move {
                    books
                        .find_one_and_update(
                            doc! { "_id": id, "version": round },
                            doc! { "$inc": { "version": 1_i64 }, "$set": { "writer": writer } },
                        )
                        .await
                        .expect("findAndModify")
                        .is_some()
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1, "round {round}: one writer wins its version");
        let stored = books.find_one(doc! { "_id": id }).await.unwrap().unwrap();
        assert_eq!(stored.get_i64("version").unwrap(), round + 1);
    }
    scratch.drop().await;
}

/// Documents of every shape the pushdown patch's sort keys tell apart: titles missing, null,
/// strings (empty, cases, accents), numbers, arrays, documents, ObjectIds; ids of two types,
/// one string spelling an ObjectId's hex; authors as a scalar, an array, an array of documents.
fn odd_documents() -> Vec<Document> {
    let object_ids: Vec<ObjectId> = (0..6).map(|_| ObjectId::new()).collect();
    let titles: Vec<Option<Bson>> = vec![
        None,
        Some(Bson::Null),
        Some("".into()),
        Some("a".into()),
        Some("B".into()),
        Some("b".into()),
        Some("é".into()),
        Some(Bson::Int32(5)),
        Some(Bson::Double(2.5)),
        Some(Bson::Array(vec!["z".into(), "a".into()])),
        Some(doc! { "x": 1 }.into()),
        Some(object_ids[0].into()),
        Some("a".into()),
        Some("a_b".into()),
        Some("ab%".into()),
    ];
    let authors: Vec<Option<Bson>> = vec![
        Some("X".into()),
        Some(Bson::Array(vec!["X".into(), "Y".into()])),
        Some(Bson::Array(vec![doc! { "name": "X" }.into()])),
        None,
        Some(Bson::Array(vec!["Y".into()])),
    ];
    let mut documents = Vec::new();
    for (n, title) in titles.iter().enumerate() {
        for (m, author) in authors.iter().enumerate() {
            let id: Bson = match (n + m) % 4 {
                0 => format!("id-{n}-{m}").into(),
                1 => object_ids[(n + m) % 6].to_hex().into(),
                _ => ObjectId::new().into(),
            };
            let mut document = doc! { "_id": id };
            if let Some(title) = title {
                document.insert("title", title.clone());
            }
            if let Some(author) = author {
                document.insert("authors", author.clone());
            }
            documents.push(document);
        }
    }
    // A string `_id` can collide with another's hex text: keep the first of each.
    let mut seen = HashSet::new();
    documents.retain(|d| seen.insert(d.get("_id").unwrap().to_string()));
    documents
}

/// `filter` with its meaning kept and nothing a server could push down: `$nor` of `$nor`.
fn unpushable(filter: &Document) -> Document {
    doc! { "$nor": [{ "$nor": [filter.clone()] }] }
}

/// Asserts that each page (`limit`, `skip`) of `filter` in `sort` order holds exactly the
/// documents of the same page of the query written so that nothing can be pushed down.
async fn answers_as_unpushed(
    collection: &Collection<Document>,
    filter: &Document,
    sort: &Document,
    pages: &[(i64, u64)],
    context: &str,
) {
    let reference = all(collection, unpushable(filter), sort.clone()).await;
    for &(limit, skip) in pages {
        let answer: Vec<Document> = collection
            .find(filter.clone())
            .sort(sort.clone())
            .skip(skip)
            .limit(limit)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let expected: Vec<Document> = reference
            .iter()
            .skip(skip as usize)
            .take(limit as usize)
            .cloned()
            .collect();
        assert_eq!(
            answer, expected,
            "{context} filter {filter}, sort {sort}, skip {skip}, limit {limit}"
        );
    }
}

#[tokio::test]
async fn narrowed_reads_answer_exactly_what_the_filter_sort_and_limit_say() {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    for (field, name) in [("title", "title_id"), ("authors", "authors_title_id")] {
        let keys = if field == "title" {
            doc! { "title": 1, "_id": 1 }
        } else {
            doc! { field: 1, "title": 1, "_id": 1 }
        };
        let index = mongodb::IndexModel::builder()
            .keys(keys)
            .options(
                mongodb::options::IndexOptions::builder()
                    .name(name.to_owned())
                    .build(),
            )
            .build();
        books.create_index(index).await.unwrap();
    }
    let documents = odd_documents();
    books.insert_many(documents.clone()).await.unwrap();

    let ids: Vec<Bson> = documents
        .iter()
        .step_by(3)
        .map(|d| d.get("_id").unwrap().clone())
        .collect();
    let mut filters = vec![
        doc! {},
        doc! { "$and": [{ "authors": "X" }] },
        doc! { "authors": "Y" },
        doc! { "_id": { "$in": ids.clone() } },
        doc! { "_id": ids[1].clone() },
        doc! { "title": { "$gte": "B" } },
        doc! { "title": { "$lt": "b" } },
        doc! { "title": { "$lte": "a" }, "authors": "X" },
        doc! { "title": "a" },
        doc! { "authors": { "$in": ["Y", "none"] } },
        doc! { "$or": [{ "title": "a" }, { "authors": "Y" }] },
        // Prefix searches as the API compiles them: `^` and the text, punctuation escaped.
        doc! { "title": { "$regex": "^a" } },
        doc! { "title": { "$regex": "^a\\_" } },
        doc! { "title": { "$regex": "^ab\\%" }, "authors": "X" },
        doc! { "title": { "$regex": "^a.b" } },
        doc! { "title": { "$regex": "^A", "$options": "i" } },
    ];
    for document in documents.iter().step_by(4) {
        let (Some(title), Some(id)) = (document.get("title"), document.get("_id")) else {
            continue;
        };
        let keyset = doc! { "$or": [
            { "title": { "$gt": title.clone() } },
            { "title": title.clone(), "_id": { "$gt": id.clone() } },
        ] };
        // As the store sends it: the `$or` under the bound it implies.
        let bounded = doc! { "$and": [{ "title": { "$gte": title.clone() } }, keyset.clone()] };
        filters.push(doc! { "$and": [{ "$and": [{ "authors": "X" }] }, keyset.clone()] });
        filters.push(doc! { "$and": [{}, keyset] });
        filters.push(doc! { "$and": [{ "$and": [{ "authors": "X" }] }, bounded.clone()] });
        filters.push(doc! { "$and": [{}, bounded] });
    }
    let sorts = [
        doc! { "title": 1, "_id": 1 },
        doc! { "title": -1, "_id": -1 },
        doc! { "authors": 1, "_id": 1 },
        doc! { "_id": 1 },
    ];

    for filter in &filters {
        for sort in &sorts {
            answers_as_unpushed(
                &books,
                filter,
                sort,
                &[(1, 0), (3, 0), (7, 2), (1000, 0)],
                "",
            )
            .await;
        }
    }
    scratch.drop().await;
}

/// Sorted pages of one value of a field that leads an index (a bookstore's books): while no
/// document holds the field as an array (or any value without a sort key), the local server
/// reads them through that index in order; once one does, through the filter. Either way the
/// answers are exactly those of the same query with nothing pushed down.
#[tokio::test]
async fn sorted_reads_of_one_value_of_an_indexed_field_answer_the_same_before_and_after_an_array_appears(
) {
    let scratch = Scratch::new().await;
    let books = scratch.collection("books");
    let index = mongodb::IndexModel::builder()
        .keys(doc! { "store": 1, "title": 1, "_id": 1 })
        .options(
            mongodb::options::IndexOptions::builder()
                .name("store_title_id".to_owned())
                .build(),
        )
        .build();
    books.create_index(index).await.unwrap();
    let (a, b) = (ObjectId::new(), ObjectId::new());
    let stores: [Option<Bson>; 6] = [
        Some(a.into()),
        Some(b.into()),
        Some("s1".into()),
        Some(a.to_hex().into()),
        Some(Bson::Null),
        None,
    ];
    let titles = ["", "a", "B", "b", "é", "a", "ab"];
    let mut documents = Vec::new();
    for n in 0..60 {
        let mut document = doc! { "_id": ObjectId::new(), "n": n as i32 };
        if let Some(store) = &stores[n % stores.len()] {
            document.insert("store", store.clone());
        }
        match n % 9 {
            7 => {}
            8 => {
                document.insert("title", Bson::Int32(n as i32));
            }
            _ => {
                document.insert("title", titles[n % titles.len()]);
            }
        }
        documents.push(document);
    }
    books.insert_many(documents).await.unwrap();

    let check = |phase: &'static str| {
        let books = books.clone();
        async move {
            let mut filters = vec![
                doc! { "store": a },
                doc! { "$and": [{ "$and": [{ "store": a }] }] },
                doc! { "store": "s1" },
                doc! { "store": a.to_hex() },
                doc! { "store": b, "title": { "$gte": "a" } },
            ];
            for title in ["a", "b"] {
                let keyset = doc! { "$and": [
                    { "title": { "$gte": title } },
                    { "$or": [
                        { "title": { "$gt": title } },
                        { "title": title, "_id": { "$gt": ObjectId::from_bytes([0; 12]) } },
                    ] },
                ] };
                filters.push(doc! { "$and": [{ "$and": [{ "store": a }] }, keyset] });
            }
            for filter in &filters {
                for sort in [
                    doc! { "title": 1, "_id": 1 },
                    doc! { "title": -1, "_id": -1 },
                ] {
                    answers_as_unpushed(&books, filter, &sort, &[(1, 0), (3, 0), (1000, 0)], phase)
                        .await;
                }
            }
        }
    };
    check("every store a scalar").await;
    books
        .insert_one(doc! { "_id": ObjectId::new(), "store": [a, "s1"], "title": "a" })
        .await
        .unwrap();
    check("one store an array").await;
    scratch.drop().await;
}
