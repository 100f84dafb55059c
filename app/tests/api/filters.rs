//! The filter language's one definition, held to one meaning: random filters over random
//! records give the same answer evaluated in Rust and run as a query on the real server.

use std::{collections::BTreeSet, future::IntoFuture};

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use oponn::query::{Filter, Scalar};
use oponn_tests::{unique_name, Stack};
use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};

const TITLES: [&str; 6] = ["Dune", "Dune Messiah", "dune", "Emma", "Élan", ""];
const AUTHORS: [&str; 4] = ["Ann", "Bo", "Anna", "Cé"];

fn store_ids() -> [ObjectId; 3] {
    [1u8, 2, 3].map(|n| {
        let mut bytes = [0u8; 12];
        bytes[11] = n;
        ObjectId::from_bytes(bytes)
    })
}

/// A record shaped like a stored book, with the irregular corners: missing and null
/// fields, empty arrays, unicode, case.
fn record() -> impl Strategy<Value = Document> {
    (
        prop::sample::select(&TITLES[..]),
        prop::collection::vec(prop::sample::select(&AUTHORS[..]), 0..3),
        prop_oneof![
            Just(None),
            Just(Some(Bson::Null)),
            (1990i32..1995).prop_map(|y| Some(Bson::Int32(y)))
        ],
        prop_oneof![
            Just(None),
            Just(Some(Bson::Null)),
            (0usize..3).prop_map(|i| Some(Bson::ObjectId(store_ids()[i])))
        ],
    )
        .prop_map(|(title, authors, year, store)| {
            let mut document = doc! { "_id": ObjectId::new(), "title": title, "authors": authors };
            if let Some(year) = year {
                document.insert("year", year);
            }
            if let Some(store) = store {
                document.insert("store", store);
            }
            document
        })
}

fn text() -> impl Strategy<Value = Scalar> {
    prop::sample::select(&TITLES[..]).prop_map(|t| Scalar::Str(t.to_owned()))
}

fn leaf() -> impl Strategy<Value = Filter> {
    let author = prop::sample::select(&AUTHORS[..]).prop_map(|a| Scalar::Str(a.to_owned()));
    let year = (1989i64..1996).prop_map(Scalar::Int);
    let store = prop_oneof![
        Just(Scalar::Null),
        (0usize..3).prop_map(|i| Scalar::Id(store_ids()[i].to_hex()))
    ];
    let prefix =
        prop::sample::select(&["D", "Dune ", "É", "", "d", "A", "An"][..]).prop_map(str::to_owned);
    prop_oneof![
        text().prop_map(|t| Filter::Eq("title".into(), t)),
        prefix
            .clone()
            .prop_map(|p| Filter::Prefix("title".into(), p)),
        (prop::option::of(text()), prop::option::of(text())).prop_map(|(gte, lt)| Filter::Range {
            field: "title".into(),
            gte,
            lt
        }),
        author.clone().prop_map(|a| Filter::Eq("authors".into(), a)),
        prop::collection::vec(author, 0..3).prop_map(|a| Filter::In("authors".into(), a)),
        prefix.prop_map(|p| Filter::Prefix("authors".into(), p)),
        year.clone().prop_map(|y| Filter::Eq("year".into(), y)),
        Just(Filter::Eq("year".into(), Scalar::Null)),
        (prop::option::of(year.clone()), prop::option::of(year)).prop_map(|(gte, lt)| {
            Filter::Range {
                field: "year".into(),
                gte,
                lt,
            }
        }),
        store.clone().prop_map(|s| Filter::Eq("store".into(), s)),
        prop::collection::vec(store, 0..3).prop_map(|s| Filter::In("store".into(), s)),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::All),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Any),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

#[test]
fn filters_mean_the_same_in_rust_and_on_the_server() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let stack = Stack::from_env();
    let database = unique_name("filters");
    let client = runtime
        .block_on(mongodb::Client::with_uri_str(&stack.mongodb_uri))
        .expect("a MongoDB client");
    let collection = client.database(&database).collection::<Document>("records");

    let mut runner = TestRunner::deterministic();
    let records = prop::collection::vec(record(), 60)
        .new_tree(&mut runner)
        .expect("records")
        .current();
    runtime
        .block_on(collection.insert_many(&records).into_future())
        .expect("insert the records");

    let mut config = ProptestConfig::with_cases(300);
    config.failure_persistence = None;
    let result = TestRunner::new(config).run(&filter(), |filter| {
        let on_server: BTreeSet<ObjectId> = runtime
            .block_on(async {
                collection
                    .find(filter.to_mongo())
                    .await?
                    .try_collect::<Vec<Document>>()
                    .await
            })
            .expect("the server runs the filter")
            .iter()
            .map(|d| d.get_object_id("_id").unwrap())
            .collect();
        let in_rust: BTreeSet<ObjectId> = records
            .iter()
            .filter(|d| filter.matches(d))
            .map(|d| d.get_object_id("_id").unwrap())
            .collect();
        prop_assert_eq!(
            &in_rust,
            &on_server,
            "filter {:?} as {}",
            filter,
            filter.to_mongo()
        );
        Ok(())
    });
    runtime
        .block_on(client.database(&database).drop().into_future())
        .expect("drop the test database");
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
