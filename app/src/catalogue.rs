//! A generated catalogue for load tests and benchmarks (`oponn seed --generate 100000`): books
//! that look like Open Library's (titles, authors, subjects, years) spread over bookstores of
//! very different sizes, the same for the same arguments on every run.
//!
//! Store sizes follow a Zipf-like law (store `i` holds in proportion to `1 / (i + 1)^0.8`): with
//! 100,000 books over 500 stores the largest holds about 7,700 books and the smallest about 50.
//! Author popularity is skewed the same way, so some authors have hundreds of books and most a
//! handful, as in a real catalogue.

use std::time::{Duration, Instant};

use crate::{
    datastore::{Datastore, DatastoreError},
    domain::{
        BookstoreName, Label, LabelList, NewBook, NewBookstore, PublishYear, SourceKey, Title,
    },
    store::UpsertSummary,
};

/// The seed of every generated catalogue: the same arguments give the same books.
const SEED: u64 = 0x0b00_c5ee_d000_0001;
/// How skewed store sizes and author popularity are.
const SKEW: f64 = 0.8;

const ADJECTIVES: &[&str] = &[
    "Silent",
    "Hidden",
    "Last",
    "Broken",
    "Golden",
    "Secret",
    "Lost",
    "Dark",
    "Bright",
    "Wild",
    "Forgotten",
    "Burning",
    "Winter",
    "Crimson",
    "Endless",
    "Little",
    "Quiet",
    "Distant",
    "Iron",
    "Glass",
];
const NOUNS: &[&str] = &[
    "River",
    "Garden",
    "House",
    "Kingdom",
    "Sea",
    "Road",
    "Mountain",
    "City",
    "Night",
    "Star",
    "Forest",
    "Letter",
    "Island",
    "Bridge",
    "Storm",
    "Mirror",
    "Library",
    "Harbour",
    "Crown",
    "Shadow",
    "Machine",
    "Orchard",
    "Lighthouse",
    "Empire",
    "Voyage",
];
const PLACES: &[&str] = &[
    "Avalon",
    "Babylon",
    "the North",
    "Lisbon",
    "the Moor",
    "Kyoto",
    "Samarkand",
    "the Delta",
    "Prague",
    "the Steppe",
    "Alexandria",
    "Patagonia",
];
const FIRST_NAMES: &[&str] = &[
    "Anna",
    "Jorge",
    "Mary",
    "Haruki",
    "Chinua",
    "Virginia",
    "Leo",
    "Toni",
    "Italo",
    "Ursula",
    "Gabriel",
    "Doris",
    "Fyodor",
    "Zadie",
    "Kazuo",
    "Octavia",
    "Jane",
    "Salman",
    "Agatha",
    "Terry",
    "Isabel",
    "Naguib",
    "Elena",
    "Orhan",
    "Wislawa",
    "Jose",
    "Clarice",
    "Yasunari",
    "Margaret",
    "Ngugi",
    "Olga",
    "Arundhati",
];
const LAST_NAMES: &[&str] = &[
    "Borges",
    "Shelley",
    "Murakami",
    "Achebe",
    "Woolf",
    "Tolstoy",
    "Morrison",
    "Calvino",
    "Le Guin",
    "Marquez",
    "Lessing",
    "Dostoevsky",
    "Smith",
    "Ishiguro",
    "Butler",
    "Austen",
    "Rushdie",
    "Christie",
    "Pratchett",
    "Allende",
    "Mahfouz",
    "Ferrante",
    "Pamuk",
    "Szymborska",
    "Saramago",
    "Lispector",
    "Kawabata",
    "Atwood",
    "Thiong'o",
    "Tokarczuk",
    "Roy",
    "Eco",
    "Mann",
    "Kafka",
    "Orwell",
    "Huxley",
];
const SUBJECTS: &[&str] = &[
    "Fiction",
    "Fantasy",
    "Science fiction",
    "History",
    "Poetry",
    "Romance",
    "Mystery",
    "Biography",
    "Travel",
    "Philosophy",
    "Children's stories",
    "Adventure",
    "Humor",
    "War",
    "Politics",
    "Art",
    "Music",
    "Nature",
    "Cooking",
    "Religion",
    "Science",
    "Mathematics",
    "Drama",
    "Short stories",
    "Essays",
    "Letters",
    "Myths",
    "Horror",
    "Crime",
    "Family",
];
const CITIES: &[&str] = &[
    "Portland",
    "San Francisco",
    "Paris",
    "Lisbon",
    "Tokyo",
    "Buenos Aires",
    "Cairo",
    "Berlin",
    "Edinburgh",
    "Montreal",
    "Melbourne",
    "Cape Town",
    "Istanbul",
    "Mumbai",
    "Krakow",
    "Oslo",
];

/// One store of the catalogue and the books it holds.
pub struct Shelf {
    pub store: NewBookstore,
    pub books: Vec<NewBook>,
}

/// The catalogue of `books` books over `stores` stores (at least one).
pub fn generate(books: usize, stores: usize) -> Vec<Shelf> {
    let stores = stores.max(1);
    let mut rng = fastrand::Rng::with_seed(SEED);
    let authors = author_pool(books.div_ceil(8).max(1));
    let author_weights = cumulative(authors.len());
    let mut next = 0_usize;
    shelf_sizes(books, stores)
        .into_iter()
        .enumerate()
        .map(|(index, size)| {
            let shelf = (next..next + size)
                .map(|n| book(n, &mut rng, &authors, &author_weights))
                .collect();
            next += size;
            Shelf {
                store: store(index),
                books: shelf,
            }
        })
        .collect()
}

/// What seeding a catalogue did.
#[derive(Debug)]
pub struct SeedReport {
    pub summary: UpsertSummary,
    pub books: usize,
    pub elapsed: Duration,
}

impl SeedReport {
    pub fn books_per_second(&self) -> f64 {
        self.books as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Writes `shelves` through the service's own paths: each store created (or found by name),
/// then its books by the bulk upsert, 1,000 per batch, cache included. Idempotent.
pub async fn seed(datastore: &Datastore, shelves: &[Shelf]) -> Result<SeedReport, DatastoreError> {
    let started = Instant::now();
    let total: usize = shelves.iter().map(|s| s.books.len()).sum();
    let mut report = SeedReport {
        summary: UpsertSummary::default(),
        books: 0,
        elapsed: Duration::ZERO,
    };
    for shelf in shelves {
        let store = match datastore.bookstore_by_name(&shelf.store.name).await? {
            Some(store) => store,
            None => datastore.create_bookstore(shelf.store.clone()).await?,
        };
        for batch in shelf.books.chunks(1_000) {
            let (summary, _) = datastore.upsert_books_into(batch, Some(store.id)).await?;
            report.summary.inserted += summary.inserted;
            report.summary.changed += summary.changed;
            report.summary.unchanged += summary.unchanged;
            let before = report.books / 10_000;
            report.books += batch.len();
            if report.books / 10_000 > before {
                tracing::info!(
                    written = report.books,
                    books = total,
                    books_per_second =
                        (report.books as f64 / started.elapsed().as_secs_f64()).round(),
                    "seeding"
                );
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// How many books each store holds: skewed, summing to `books`.
fn shelf_sizes(books: usize, stores: usize) -> Vec<usize> {
    let weights: Vec<f64> = (0..stores).map(weight).collect();
    let total: f64 = weights.iter().sum();
    let mut sizes: Vec<usize> = weights
        .iter()
        .map(|w| (books as f64 * w / total).floor() as usize)
        .collect();
    let missing = books - sizes.iter().sum::<usize>();
    for size in sizes.iter_mut().take(missing) {
        *size += 1;
    }
    sizes
}

fn weight(rank: usize) -> f64 {
    1.0 / ((rank + 1) as f64).powf(SKEW)
}

/// Running sums of the weights of `n` ranks, to draw a rank in proportion to its weight.
fn cumulative(n: usize) -> Vec<f64> {
    let mut sum = 0.0;
    (0..n)
        .map(|rank| {
            sum += weight(rank);
            sum
        })
        .collect()
}

fn draw(rng: &mut fastrand::Rng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let point = rng.f64() * total;
    cumulative
        .partition_point(|&sum| sum < point)
        .min(cumulative.len() - 1)
}

fn author_pool(size: usize) -> Vec<String> {
    let initials = b"ABCDEFGHJKLMNOPRSTVW";
    (0..size)
        .map(|n| {
            let first = FIRST_NAMES[n % FIRST_NAMES.len()];
            let last = LAST_NAMES[(n / FIRST_NAMES.len()) % LAST_NAMES.len()];
            match n / (FIRST_NAMES.len() * LAST_NAMES.len()) {
                0 => format!("{first} {last}"),
                round => {
                    let initial = initials[(round - 1) % initials.len()] as char;
                    let generation = (round - 1) / initials.len();
                    if generation == 0 {
                        format!("{first} {initial}. {last}")
                    } else {
                        format!("{first} {initial}. {last} {}", generation + 1)
                    }
                }
            }
        })
        .collect()
}

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

fn title(rng: &mut fastrand::Rng) -> String {
    let (adjective, noun, other) = (pick(rng, ADJECTIVES), pick(rng, NOUNS), pick(rng, NOUNS));
    let base = match rng.u8(..6) {
        0 => format!("The {adjective} {noun}"),
        1 => format!("The {noun} of {}", pick(rng, PLACES)),
        2 => format!("{noun} and {other}"),
        3 => format!("A {adjective} {noun} in {}", pick(rng, PLACES)),
        4 => format!("{adjective} {noun}s"),
        _ => format!("The {noun}"),
    };
    match rng.u8(..10) {
        0 => format!("{base}: A Novel"),
        1 => format!("{base}, Volume {}", rng.u8(1..6)),
        _ => base,
    }
}

fn book(n: usize, rng: &mut fastrand::Rng, authors: &[String], weights: &[f64]) -> NewBook {
    let author_count = [1, 1, 1, 1, 1, 2, 2, 3][rng.usize(..8)];
    let names: Vec<&str> = (0..author_count)
        .map(|_| authors[draw(rng, weights)].as_str())
        .collect();
    let subjects: Vec<&str> = (0..rng.usize(1..4)).map(|_| pick(rng, SUBJECTS)).collect();
    let year = rng.i64(1850..2025);
    NewBook {
        source_key: SourceKey::parse(&format!("/works/OL{}W", 9_000_000 + n))
            .expect("a generated work key is valid"),
        title: Title::parse(&title(rng)).expect("a generated title is valid"),
        authors: LabelList::parse("authors", &names, crate::domain::Book::MAX_AUTHORS)
            .expect("generated authors are valid"),
        first_publish_year: PublishYear::parse(year).ok(),
        subjects: LabelList::parse("subjects", &subjects, crate::domain::Book::MAX_SUBJECTS)
            .expect("generated subjects are valid"),
        author_credits: Vec::new(),
    }
}

fn store(index: usize) -> NewBookstore {
    let noun = NOUNS[index % NOUNS.len()];
    NewBookstore {
        name: BookstoreName::parse(&format!("{noun} Books No. {}", index + 1))
            .expect("a generated store name is valid"),
        city: Label::parse("city", CITIES[index % CITIES.len()]).expect("a city is a label"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_has_the_books_asked_for_in_skewed_stores_the_same_every_time() {
        let shelves = generate(10_000, 50);
        assert_eq!(shelves.len(), 50);
        let sizes: Vec<usize> = shelves.iter().map(|s| s.books.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 10_000);
        assert!(sizes[0] > 10 * sizes[49], "skewed: {sizes:?}");
        let again = generate(10_000, 50);
        assert_eq!(shelves[7].books, again[7].books);
        let keys: std::collections::HashSet<_> = shelves
            .iter()
            .flat_map(|s| s.books.iter().map(|b| b.source_key.clone()))
            .collect();
        assert_eq!(keys.len(), 10_000, "work keys are distinct");
    }
}
