//! What a query costs before it runs: the schema's complexity limit counts every record a list
//! can return, so a request's work and its response grow with its cost, never past it.
//!
//! async-graphql charges each field 1 plus its selection. A list field charges its selection
//! once per record it may return (`first`, or the number of ids asked for), so nested lists
//! multiply: `bookstores(first: 20) { nodes { books(first: 20) { nodes { title } } } }` costs
//! about 20 x 20 x 2. Aliases repeat a field's cost, and their number is bounded on its own
//! ([`Aliases`]), since each alias is also a separate resolver call.

use async_graphql::{
    parser::types::{ExecutableDocument, Selection, SelectionSet},
    Positioned, ServerResult,
};

use super::{
    error::{server_error, Code},
    lists::MAX_PAGE_SIZE,
};

/// The cost of a paged list field returning up to `first` records of `child` each.
pub fn list(first: Option<i32>, child: usize) -> usize {
    let records = super::lists::page_size(first).clamp(1, MAX_PAGE_SIZE) as usize;
    batch(records, child)
}

/// The cost of a field returning one record of cost `child` per id.
pub fn batch(ids: usize, child: usize) -> usize {
    ids.max(1).saturating_mul(child).saturating_add(1)
}

/// Refuses documents with more aliases than `max` (`OPONN_MAX_QUERY_ALIASES`).
pub(super) fn check_aliases(document: &ExecutableDocument, max: usize) -> ServerResult<()> {
    let aliases = count_aliases(document);
    if aliases > max {
        return Err(server_error(
            Code::GraphqlValidationFailed,
            &format!(
                "the document has {aliases} aliases; at most {max} are allowed (OPONN_MAX_QUERY_ALIASES)"
            ),
        ));
    }
    Ok(())
}

/// Every alias in the document's operations and fragments.
fn count_aliases(document: &ExecutableDocument) -> usize {
    let operations = document
        .operations
        .iter()
        .map(|(_, operation)| in_selection(&operation.node.selection_set));
    let fragments = document
        .fragments
        .values()
        .map(|fragment| in_selection(&fragment.node.selection_set));
    operations.chain(fragments).sum()
}

fn in_selection(set: &Positioned<SelectionSet>) -> usize {
    set.node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + in_selection(&field.node.selection_set)
            }
            Selection::InlineFragment(fragment) => in_selection(&fragment.node.selection_set),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases(query: &str) -> usize {
        count_aliases(&async_graphql::parser::parse_query(query).expect("a valid document"))
    }

    #[test]
    fn aliases_are_counted_in_operations_fragments_and_nested_fields() {
        assert_eq!(
            aliases("{ a: book(id: 1) { id } b: book(id: 2) { x: id } }"),
            3
        );
        assert_eq!(
            aliases("{ ...F } fragment F on Query { a: book(id: 1) { ... on Book { t: title } } }"),
            2
        );
        assert_eq!(aliases("{ book(id: 1) { id title } }"), 0);
    }

    #[test]
    fn list_costs_multiply_by_the_records_they_may_return() {
        assert_eq!(list(Some(100), 3), 301);
        assert_eq!(list(None, 3), 61, "the default page size");
        assert_eq!(
            list(Some(-5), 3),
            4,
            "a refused page size still costs one record"
        );
        assert_eq!(
            list(Some(i32::MAX), 3),
            301,
            "page sizes past the limit cost the limit"
        );
        assert_eq!(batch(1_000, 2), 2_001);
        assert_eq!(
            batch(usize::MAX, 2),
            usize::MAX,
            "saturates instead of wrapping"
        );
    }
}
