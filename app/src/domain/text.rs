//! Short human-readable strings (author names, subjects): trimmed, inner whitespace collapsed,
//! non-empty, bounded in length.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A bounded, normalised piece of text: an author's name, a subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl TryFrom<String> for Label {
    type Error = InvalidText;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse("label", &raw)
    }
}

impl From<Label> for String {
    fn from(label: Label) -> Self {
        label.0
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidText {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} has more than {max} entries")]
    TooMany { field: &'static str, max: usize },
    #[error("{field} contains a control character")]
    ControlCharacter { field: &'static str },
    #[error(
        "{field} contains a bidirectional control character, which can disguise how it displays"
    )]
    BidiControl { field: &'static str },
    #[error("{field} has no visible character")]
    Invisible { field: &'static str },
}

/// A prefix to match text against (`titlePrefix`, `namePrefix`): as given (a prefix may end in a
/// space), but non-empty, bounded like the text it matches, and free of control characters.
pub struct Prefix(String);

impl Prefix {
    pub fn parse(field: &'static str, raw: &str, max: usize) -> Result<Self, InvalidText> {
        if raw.chars().any(char::is_control) {
            return Err(InvalidText::ControlCharacter { field });
        }
        if raw.is_empty() {
            return Err(InvalidText::Empty { field });
        }
        if raw.chars().count() > max {
            return Err(InvalidText::TooLong { field, max });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters that display
/// as nothing (zero-width spaces and joiners, soft hyphen, word joiner, variation selectors,
/// bidi marks, BOM, Hangul fillers, tags).
pub(crate) fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// The characters that reorder text as it displays (embeddings, overrides, isolates, marks).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl Label {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidText> {
        normalise(field, raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ordered list of distinct labels (authors, subjects), duplicates removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelList(Vec<Label>);

impl LabelList {
    pub fn parse<S: AsRef<str>>(
        field: &'static str,
        raw: &[S],
        max: usize,
    ) -> Result<Self, InvalidText> {
        let mut labels: Vec<Label> = Vec::with_capacity(raw.len());
        for item in raw {
            let label = Label::parse(field, item.as_ref())?;
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        if labels.len() > max {
            return Err(InvalidText::TooMany { field, max });
        }
        Ok(Self(labels))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|label| label.0.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Trims, collapses inner whitespace and bounds the length of `raw`.
pub(crate) fn normalise(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidText> {
    // Text that is already normal (every cached record's, every stored one's) is checked in one
    // pass and copied once: a cached read decodes every label of its record.
    match scan(raw) {
        Scan::Control => return Err(InvalidText::ControlCharacter { field }),
        Scan::Normal { chars: 0 } => return Err(InvalidText::Empty { field }),
        Scan::Normal { chars } if chars > max => return Err(InvalidText::TooLong { field, max }),
        Scan::Normal { .. } => return Ok(raw.to_owned()),
        Scan::Uncollapsed => {}
    }
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return Err(InvalidText::Empty { field });
    }
    if collapsed.chars().count() > max {
        return Err(InvalidText::TooLong { field, max });
    }
    Ok(collapsed)
}

enum Scan {
    /// A control character that is not whitespace.
    Control,
    /// Whitespace to trim or collapse.
    Uncollapsed,
    /// Already trimmed and collapsed, `chars` long.
    Normal { chars: usize },
}

fn scan(raw: &str) -> Scan {
    let mut chars = 0;
    let mut uncollapsed = false;
    // True at the start, so that leading whitespace counts as a run.
    let mut after_space = true;
    for c in raw.chars() {
        if c.is_control() && !c.is_whitespace() {
            return Scan::Control;
        }
        if c.is_whitespace() {
            uncollapsed |= c != ' ' || after_space;
            after_space = true;
        } else {
            after_space = false;
        }
        chars += 1;
    }
    match uncollapsed || (after_space && chars > 0) {
        true => Scan::Uncollapsed,
        false => Scan::Normal { chars },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_collapsed() {
        let label = Label::parse("author", "  J. R. R.\t Tolkien ").expect("valid");
        assert_eq!(label.as_str(), "J. R. R. Tolkien");
    }

    #[test]
    fn text_is_normal_exactly_when_collapsing_would_not_change_it() {
        for raw in [
            "a",
            "a b",
            " a",
            "a ",
            "a  b",
            "a\tb",
            "a\u{a0}b",
            "\u{3000}",
            " ",
            "",
            "a b c",
            "\u{2003}a",
            "a\nb",
            "é b",
        ] {
            let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
            let normal = matches!(scan(raw), Scan::Normal { .. });
            assert_eq!(normal, collapsed == raw, "{raw:?}");
        }
        assert!(matches!(scan("né e"), Scan::Normal { chars: 4 }));
    }

    #[test]
    fn blank_and_oversized_labels_are_rejected() {
        assert!(matches!(
            Label::parse("author", " \n "),
            Err(InvalidText::Empty { .. })
        ));
        let long = "x".repeat(Label::MAX_CHARS + 1);
        assert!(matches!(
            Label::parse("author", &long),
            Err(InvalidText::TooLong { .. })
        ));
        assert!(matches!(
            Label::parse("author", "a\u{0}b"),
            Err(InvalidText::ControlCharacter { .. })
        ));
    }

    #[test]
    fn lists_drop_duplicates_and_keep_order() {
        let list = LabelList::parse("subjects", &["b", "a", " b "], 10).expect("valid");
        assert_eq!(list.to_strings(), ["b", "a"]);
        assert!(LabelList::parse("subjects", &["a", "b", "c"], 2).is_err());
    }
}
