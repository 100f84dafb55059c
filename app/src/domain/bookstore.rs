//! Bookstores: they own books (`book.bookstore_id`), and their names are unique after
//! normalisation.
//!
//! Two names are the same store when their [`NameKey`]s are equal: Unicode NFKC, full case
//! folding, NFKC again (folding can denormalise), surrounding whitespace trimmed and inner
//! whitespace collapsed to one space. So "Powell's  Books", " powell's BOOKS" and
//! "Ｐｏｗｅｌｌ'ｓ Books" (full-width letters) are one name. Default-ignorable characters
//! (zero-width spaces and joiners, soft hyphens, word joiners, BOM...) leave the key too, as
//! Unicode's NFKC_Casefold drops them, so a look-alike made with them collides with the name
//! it imitates. Bidi controls are refused outright (they can make a name display as another),
//! and so is a name with no visible character. The display name keeps the user's spelling; MongoDB enforces uniqueness with a unique index on the key, which is what
//! makes two concurrent creates of the same name leave one store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::{
    text::{is_bidi_control, is_default_ignorable, normalise, InvalidText},
    BookstoreId, Label, Version,
};

/// A stored bookstore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bookstore {
    pub id: BookstoreId,
    pub name: BookstoreName,
    pub city: Label,
    pub version: Version,
    pub updated_at: DateTime<Utc>,
}

/// A bookstore to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBookstore {
    pub name: BookstoreName,
    pub city: Label,
}

/// A partial update of a bookstore: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookstoreChanges {
    pub name: Option<BookstoreName>,
    pub city: Option<Label>,
}

impl BookstoreChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `store` with these changes applied, at `version` and `updated_at` (what MongoDB's
    /// update does in write-through; write-behind applies changes here).
    pub fn apply(
        &self,
        store: &Bookstore,
        version: Version,
        updated_at: DateTime<Utc>,
    ) -> Bookstore {
        Bookstore {
            id: store.id,
            name: self.name.clone().unwrap_or_else(|| store.name.clone()),
            city: self.city.clone().unwrap_or_else(|| store.city.clone()),
            version,
            updated_at,
        }
    }
}

impl NewBookstore {
    /// The bookstore this creates, with `id`, at `version` and `updated_at`.
    pub fn into_bookstore(
        self,
        id: BookstoreId,
        version: Version,
        updated_at: DateTime<Utc>,
    ) -> Bookstore {
        Bookstore {
            id,
            name: self.name,
            city: self.city,
            version,
            updated_at,
        }
    }
}

/// A bookstore's name as the user spelled it (whitespace tidied), with its uniqueness key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BookstoreName {
    display: String,
    key: NameKey,
}

/// The normalised form two names are compared by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey(String);

impl BookstoreName {
    pub const MAX_CHARS: usize = 120;

    pub fn parse(raw: &str) -> Result<Self, InvalidText> {
        if raw.chars().any(is_bidi_control) {
            return Err(InvalidText::BidiControl { field: "name" });
        }
        let display = normalise("name", raw, Self::MAX_CHARS)?;
        let key = NameKey::of(&display);
        if key.0.is_empty() {
            return Err(InvalidText::Invisible { field: "name" });
        }
        Ok(Self { display, key })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn key(&self) -> &NameKey {
        &self.key
    }
}

impl NameKey {
    /// NFKC, case-folded, NFKC again, default-ignorable characters removed, whitespace (and
    /// the blank Braille pattern, which displays as one) trimmed and collapsed.
    pub fn of(name: &str) -> Self {
        let compatible: String = name.nfkc().filter(|c| !is_default_ignorable(*c)).collect();
        let folded = caseless::default_case_fold_str(&compatible);
        let normal: String = folded
            .nfkc()
            .filter(|c| !is_default_ignorable(*c))
            .map(|c| if c == '\u{2800}' { ' ' } else { c })
            .collect();
        Self(normal.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BookstoreName {
    type Error = InvalidText;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<BookstoreName> for String {
    fn from(name: BookstoreName) -> Self {
        name.display
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        BookstoreName::parse(name)
            .expect("valid name")
            .key()
            .as_str()
            .to_owned()
    }

    #[test]
    fn spacing_and_case_do_not_make_a_new_name() {
        assert_eq!(key("Powell's  Books"), key(" powell's BOOKS "));
        assert_eq!(key("Powell's Books"), "powell's books");
    }

    #[test]
    fn compatibility_forms_and_full_case_folding_collide() {
        assert_eq!(key("Ｐｏｗｅｌｌ'ｓ Books"), key("Powell's Books"));
        assert_eq!(key("STRASSE"), key("Straße"));
        assert_eq!(key("ﬁne books"), key("fine books"));
        assert_eq!(
            key("Café"),
            key("Cafe\u{301}"),
            "composed and decomposed accents"
        );
    }

    #[test]
    fn different_names_stay_different() {
        assert_ne!(key("Powell's Books"), key("Powells Books"));
        assert_ne!(key("Café"), key("Cafe"));
    }

    #[test]
    fn the_display_name_keeps_the_users_spelling() {
        let name = BookstoreName::parse("  Powell's   Books ").expect("valid");
        assert_eq!(name.as_str(), "Powell's Books");
    }

    #[test]
    fn invisible_characters_cannot_make_a_look_alike() {
        for invisible in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{00AD}', '\u{2060}', '\u{FEFF}', '\u{3164}',
        ] {
            let look_alike = format!("Powell's{invisible} Books");
            assert_eq!(
                key(&look_alike),
                key("Powell's Books"),
                "U+{:04X}",
                invisible as u32
            );
        }
    }

    #[test]
    fn bidi_controls_and_names_with_nothing_visible_are_refused() {
        for control in ['\u{202E}', '\u{200F}', '\u{2066}', '\u{061C}'] {
            assert_eq!(
                BookstoreName::parse(&format!("Powell's{control} Books")),
                Err(InvalidText::BidiControl { field: "name" })
            );
        }
        for blank in ["\u{200B}\u{200B}", "\u{2800}", "\u{3164} \u{FEFF}"] {
            assert_eq!(
                BookstoreName::parse(blank),
                Err(InvalidText::Invisible { field: "name" }),
                "{blank:?}"
            );
        }
    }

    #[test]
    fn blank_and_oversized_names_are_rejected() {
        assert!(BookstoreName::parse(" \t ").is_err());
        assert!(BookstoreName::parse(&"x".repeat(BookstoreName::MAX_CHARS + 1)).is_err());
        assert!(BookstoreName::parse("a\u{7}b").is_err());
    }
}
