//! Every branch of [`CachedResult::apply`], on a page of fruit ordered by name.

use mongodb::bson::{doc, oid::ObjectId, Document};

use super::*;

fn id(n: u8) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[11] = n;
    ObjectId::from_bytes(bytes)
}

fn fruit(n: u8, name: &str, colour: &str) -> Document {
    doc! { "_id": id(n), "name": name, "colour": colour }
}

fn spec(first: Option<usize>, after: Option<Cursor>) -> Spec {
    Spec {
        name: "fruit".into(),
        sources: vec![Source {
            collection: "apples".into(),
            filter: Filter::Eq("colour".into(), Scalar::Str("red".into())),
            sort_field: "name".into(),
            term_fields: vec!["colour".into()],
            project: None,
        }],
        after,
        first,
    }
}

fn written(document: Document) -> Written {
    Written {
        collection: "apples".into(),
        id: Scalar::Id(document.get_object_id("_id").unwrap().to_hex()),
        before: None,
        after: Some(document),
    }
}

fn changed(before: Document, after: Document) -> Written {
    Written {
        before: Some(before),
        ..written(after)
    }
}

fn deleted(n: u8) -> Written {
    Written {
        collection: "apples".into(),
        id: Scalar::Id(id(n).to_hex()),
        before: None,
        after: None,
    }
}

fn names(result: &CachedResult) -> Vec<String> {
    result
        .members
        .iter()
        .map(|m| match &m.key {
            Scalar::Str(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// A full page of two red apples (b, d) with more beyond.
fn full_page() -> CachedResult {
    CachedResult::from_documents(
        spec(Some(2), None),
        vec![vec![
            fruit(2, "b", "red"),
            fruit(4, "d", "red"),
            fruit(6, "f", "red"),
        ]],
    )
}

/// A complete page: every red apple (b, d), room for three.
fn complete_page() -> CachedResult {
    CachedResult::from_documents(
        spec(Some(3), None),
        vec![vec![fruit(2, "b", "red"), fruit(4, "d", "red")]],
    )
}

#[test]
fn building_keeps_the_page_size_and_notes_whether_more_exist() {
    assert_eq!(names(&full_page()), ["b", "d"]);
    assert!(!full_page().complete);
    assert!(complete_page().complete);
}

#[test]
fn an_entering_record_is_inserted_in_order_and_a_full_page_drops_its_last() {
    let mut page = full_page();
    assert_eq!(page.apply(&written(fruit(1, "a", "red"))), Change::Updated);
    assert_eq!(names(&page), ["a", "b"]);
    assert!(!page.complete);

    let mut page = complete_page();
    assert_eq!(page.apply(&written(fruit(3, "c", "red"))), Change::Updated);
    assert_eq!(names(&page), ["b", "c", "d"]);
    assert!(page.complete, "three of three: still every match");
    assert_eq!(page.apply(&written(fruit(5, "e", "red"))), Change::Updated);
    assert_eq!(names(&page), ["b", "c", "d"]);
    assert!(!page.complete, "e was cut: more exist now");
}

#[test]
fn a_record_sorting_past_a_full_page_leaves_it_alone() {
    let mut page = full_page();
    assert_eq!(
        page.apply(&written(fruit(7, "g", "red"))),
        Change::Unchanged
    );
    assert_eq!(names(&page), ["b", "d"]);
}

#[test]
fn a_record_leaving_from_beyond_a_full_page_drops_it() {
    // f was beyond the page: with it gone, whether more remain is unknown.
    let gone = changed(fruit(6, "f", "red"), fruit(6, "f", "green"));
    assert_eq!(full_page().apply(&gone), Change::Drop);
    let gone = Written {
        before: Some(fruit(6, "f", "red")),
        ..deleted(6)
    };
    assert_eq!(full_page().apply(&gone), Change::Drop);
    // A complete page has nothing beyond it to lose.
    let unrelated = changed(fruit(9, "x", "red"), fruit(9, "x", "green"));
    assert_eq!(complete_page().apply(&unrelated), Change::Unchanged);
}

#[test]
fn a_non_matching_record_changes_nothing() {
    let mut page = full_page();
    assert_eq!(
        page.apply(&written(fruit(1, "a", "green"))),
        Change::Unchanged
    );
}

#[test]
fn a_member_that_changed_in_place_is_moved() {
    let mut page = full_page();
    assert_eq!(page.apply(&written(fruit(4, "a", "red"))), Change::Updated);
    assert_eq!(names(&page), ["a", "b"]);
    assert_eq!(
        page.apply(&written(fruit(4, "a", "red"))),
        Change::Unchanged
    );
}

#[test]
fn a_member_leaving_a_complete_page_is_removed() {
    let mut page = complete_page();
    assert_eq!(
        page.apply(&written(fruit(2, "b", "green"))),
        Change::Updated
    );
    assert_eq!(names(&page), ["d"]);
    assert_eq!(page.apply(&deleted(4)), Change::Updated);
    assert!(page.members.is_empty());
}

#[test]
fn a_member_leaving_a_full_page_drops_the_result() {
    assert_eq!(full_page().apply(&deleted(2)), Change::Drop);
    assert_eq!(
        full_page().apply(&written(fruit(2, "b", "green"))),
        Change::Drop
    );
    // Renamed past the page's end: its successor is unknown.
    assert_eq!(
        full_page().apply(&written(fruit(2, "z", "red"))),
        Change::Drop
    );
}

#[test]
fn the_only_member_of_a_full_page_moving_drops_it() {
    // One per page, more beyond: wherever b moves, its page's first record is unknown.
    let mut page = CachedResult::from_documents(
        spec(Some(1), None),
        vec![vec![fruit(2, "b", "red"), fruit(4, "d", "red")]],
    );
    assert!(!page.complete);
    assert_eq!(page.apply(&written(fruit(2, "e", "red"))), Change::Drop);
}

#[test]
fn a_page_after_a_cursor_ignores_records_before_it() {
    let cursor = Cursor {
        key: Scalar::Str("b".into()),
        id: Scalar::Id(id(2).to_hex()),
    };
    let mut page = CachedResult::from_documents(
        spec(Some(2), Some(cursor)),
        vec![vec![fruit(4, "d", "red")]],
    );
    assert_eq!(
        page.apply(&written(fruit(1, "a", "red"))),
        Change::Unchanged
    );
    // Same name as the cursor, higher id: after it.
    assert_eq!(page.apply(&written(fruit(3, "b", "red"))), Change::Updated);
    assert_eq!(names(&page), ["b", "d"]);
    // A member renamed to before the cursor leaves; the page was complete.
    assert!(page.complete);
    assert_eq!(page.apply(&written(fruit(4, "a", "red"))), Change::Updated);
    assert_eq!(names(&page), ["b"]);
}

#[test]
fn a_projection_follows_the_record() {
    let mut spec = spec(None, None);
    spec.sources[0].project = Some("colour".into());
    spec.sources[0].filter = Filter::In("_id".into(), vec![Scalar::Id(id(2).to_hex())]);
    let mut result = CachedResult::from_documents(spec, vec![vec![fruit(2, "b", "red")]]);
    assert_eq!(result.members[0].project, Some(Scalar::Str("red".into())));
    assert_eq!(
        result.apply(&written(fruit(2, "b", "green"))),
        Change::Updated
    );
    assert_eq!(result.members[0].project, Some(Scalar::Str("green".into())));
}

#[test]
fn a_write_visits_its_old_and_new_term_values_and_the_untermed_range() {
    let before = fruit(2, "b", "red");
    let after = fruit(2, "b", "green");
    assert_eq!(
        visited_ranges("apples", &["colour"], Some(&before), Some(&after)),
        ["apples::", "apples:colour=sgreen:", "apples:colour=sred:"]
    );
    assert_eq!(
        spec(None, None).ranges(),
        ["apples:colour=sred:"],
        "the red page is indexed under its term"
    );
}

#[test]
fn cursors_round_trip_through_their_text() {
    let cursor = Cursor {
        key: Scalar::Str("Dune: Messiah".into()),
        id: Scalar::Id(id(9).to_hex()),
    };
    assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    assert_eq!(Cursor::decode("not a cursor"), None);
}
