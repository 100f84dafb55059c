//! The brief's scenario, literally, on the generic cache core: an `apples` and an `oranges`
//! collection of different breeds; "fruit of size 7" and "fruit of colour red" cached and
//! registered in the `tables` sorted set for both collections; then an apple updated so that it
//! leaves one result and enters the other. Nothing here is specific to books: describing the
//! sources is all the core needs.

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Document};
use oponn::{
    cache::results::{Reconcile, ResultLookup},
    query::{CachedResult, Filter, Scalar, Source, Spec, Written},
};
use oponn_tests::Stack;

use crate::helpers::TestApp;

fn source(collection: &str, filter: Filter) -> Source {
    Source {
        collection: collection.into(),
        filter,
        sort_field: "breed".into(),
        term_fields: vec!["colour".into(), "size".into()],
        project: None,
    }
}

fn fruit_query(name: &str, filter: Filter) -> Spec {
    Spec {
        name: name.into(),
        sources: vec![source("apples", filter.clone()), source("oranges", filter)],
        after: None,
        first: Some(10),
    }
}

async fn cache_and_read(app: &TestApp, spec: &Spec) -> Vec<String> {
    let cache = app.datastore.cache();
    let result = match cache.lookup_result(spec).await {
        ResultLookup::Hit(result) => result,
        ResultLookup::Miss(guard) => {
            let rows = app.datastore.store().run_spec(spec).await.expect("query");
            let result = CachedResult::from_documents(spec.clone(), rows);
            cache.fill_result(&result, guard).await;
            result
        }
        ResultLookup::Bypass => panic!("Redis is up"),
    };
    breeds(&result)
}

fn breeds(result: &CachedResult) -> Vec<String> {
    result
        .members
        .iter()
        .map(|m| match &m.key {
            Scalar::Str(breed) => breed.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn an_apple_leaves_one_cached_fruit_result_and_enters_another() {
    let app = TestApp::spawn().await;
    let stack = Stack::from_env();
    let client = mongodb::Client::with_uri_str(&stack.mongodb_uri)
        .await
        .unwrap();
    let database = client.database(&app.database);
    let (apples, oranges) = (
        database.collection::<Document>("apples"),
        database.collection::<Document>("oranges"),
    );
    let gala = ObjectId::new();
    apples
        .insert_many([
            doc! { "_id": ObjectId::new(), "breed": "Fuji", "colour": "red", "size": 7, "acidity": 3 },
            doc! { "_id": ObjectId::new(), "breed": "Granny Smith", "colour": "green", "size": 6, "acidity": 8 },
            doc! { "_id": gala, "breed": "Gala", "colour": "red", "size": 5, "acidity": 2 },
        ])
        .await
        .unwrap();
    oranges
        .insert_many([
            doc! { "_id": ObjectId::new(), "breed": "Navel", "colour": "orange", "size": 7, "acidity": 5 },
            doc! { "_id": ObjectId::new(), "breed": "Blood", "colour": "red", "size": 6, "acidity": 6 },
            doc! { "_id": ObjectId::new(), "breed": "Valencia", "colour": "orange", "size": 5, "acidity": 4 },
        ])
        .await
        .unwrap();

    let by_size = fruit_query("fruitOfSize", Filter::Eq("size".into(), Scalar::Int(7)));
    let by_colour = fruit_query(
        "fruitOfColour",
        Filter::Eq("colour".into(), Scalar::Str("red".into())),
    );
    // "Apple orange acidity": no equality term, so indexed under each collection's bare range.
    let by_acidity = fruit_query(
        "fruitOfAcidity",
        Filter::Range {
            field: "acidity".into(),
            gte: Some(Scalar::Int(5)),
            lt: None,
        },
    );
    assert_eq!(cache_and_read(&app, &by_size).await, ["Fuji", "Navel"]);
    assert_eq!(
        cache_and_read(&app, &by_colour).await,
        ["Blood", "Fuji", "Gala"]
    );
    assert_eq!(
        cache_and_read(&app, &by_acidity).await,
        ["Blood", "Granny Smith", "Navel"]
    );

    // The tables sorted set, as the brief sketches it: one member per collection a result reads.
    let mut redis = redis::Client::open(stack.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let tables: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{{{}q}}tables", app.key_prefix))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    // Each member is `<range><stamp><digest>`: the stamp (the result's expiry, 13 digits)
    // orders a range's results oldest first; the sketch has no stamp.
    let mut tables: Vec<String> = tables
        .into_iter()
        .map(|member| {
            let (range_and_stamp, digest) = member.split_at(member.len() - 40);
            let (range, stamp) = range_and_stamp.split_at(range_and_stamp.len() - 13);
            assert!(stamp.bytes().all(|b| b.is_ascii_digit()), "{member}");
            format!("{range}{digest}")
        })
        .collect();
    tables.sort();
    let mut expected = vec![
        format!("apples:size=i7:{}", by_size.digest()),
        format!("oranges:size=i7:{}", by_size.digest()),
        format!("apples:colour=sred:{}", by_colour.digest()),
        format!("oranges:colour=sred:{}", by_colour.digest()),
        format!("apples::{}", by_acidity.digest()),
        format!("oranges::{}", by_acidity.digest()),
    ];
    expected.sort();
    assert_eq!(tables, expected);

    // Update an apple: Gala turns green and grows to 7 (and sharper). It leaves the red result
    // and enters the size-7 and the acidity results.
    let before = apples
        .find_one(doc! { "_id": gala })
        .await
        .unwrap()
        .unwrap();
    apples
        .update_one(
            doc! { "_id": gala },
            doc! { "$set": { "colour": "green", "size": 7, "acidity": 6 } },
        )
        .await
        .unwrap();
    let after = apples
        .find_one(doc! { "_id": gala })
        .await
        .unwrap()
        .unwrap();
    app.datastore
        .cache()
        .reconcile(
            "apples",
            &["colour", "size"],
            &[Reconcile {
                written: Written {
                    collection: "apples".into(),
                    id: Scalar::Id(gala.to_hex()),
                    before: Some(before),
                    after: Some(after),
                },
                version: 2,
            }],
        )
        .await;
    assert_eq!(
        app.metrics.query_cache_count("updated"),
        3,
        "all three reconciled in place"
    );

    for (spec, expected) in [
        (&by_size, vec!["Fuji", "Gala", "Navel"]),
        (&by_colour, vec!["Blood", "Fuji"]),
        (&by_acidity, vec!["Blood", "Gala", "Granny Smith", "Navel"]),
    ] {
        let ResultLookup::Hit(cached) = app.datastore.cache().lookup_result(spec).await else {
            panic!("{} is still cached", spec.name);
        };
        assert_eq!(breeds(&cached), expected, "{}", spec.name);
        let fresh = CachedResult::from_documents(
            spec.clone(),
            app.datastore.store().run_spec(spec).await.unwrap(),
        );
        assert_eq!(
            cached, fresh,
            "{} equals the same query run on MongoDB",
            spec.name
        );
    }

    let remaining: Vec<Document> = oranges
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(remaining.len(), 3, "the oranges were not touched");
}
