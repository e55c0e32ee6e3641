//! `wordfilter`: checks posts and topics before they are saved
//! (`flaskbb_event_post_save_before`, `flaskbb_event_topic_save_before`) for listed
//! words, matched whole and case-insensitively, and masks them or rejects the save.
//!
//! Configuration (`config = { ... }` of a `[[plugin]]`):
//! - `words`: the listed words;
//! - `action`: `"mask"` (the default) or `"reject"`;
//! - `mask`: the character each letter of a listed word becomes (default `*`).
//!
//! Any mask is safe wherever it lands. A topic's title is plain text and gets the
//! mask as it is ("A **** day"). A post's text (and a new topic's first post) is
//! Markdown, where `****` would be emphasis: there a mask that Markdown reads as
//! punctuation (`` \ ` * _ { } [ ] ( ) # + - . ! > ~ | ``) is written escaped, one
//! backslash before each character (`\*\*\*\*`), which FlaskBB renders as `****`
//! (the editor shows the backslashes); any other mask (`■`, `x`) is written as it is.

#![forbid(unsafe_code)]

use plugin_abi::prelude::*;
use serde::Deserialize;

/// What to do with a listed word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    /// Replace each letter of the word with `mask`.
    Mask,
    /// Refuse the save, naming the word.
    Reject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    words: Vec<String>,
    #[serde(default = "default_action")]
    action: Action,
    #[serde(default = "default_mask")]
    mask: char,
}

fn default_action() -> Action {
    Action::Mask
}

fn default_mask() -> char {
    '*'
}

/// One configured instance.
pub struct WordFilter {
    words: Vec<String>,
    action: Action,
    mask: char,
    /// Bit n set when some listed word is n bytes long (bit 63: 63 or more): most
    /// words of a text are ruled out by their length alone.
    lengths: u64,
}

/// The [`WordFilter::lengths`] bit of a word `len` bytes long.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl PluginInstance for WordFilter {
    fn new(init: &Init) -> Result<Self, String> {
        let c: Config = init.config()?;
        if c.words.iter().any(|w| w.trim().is_empty()) {
            return Err("config key words: an empty word would match nothing; remove it".into());
        }
        Ok(WordFilter::new(
            c.words.iter().map(|w| w.to_lowercase()).collect(),
            c.action,
            c.mask,
        ))
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '_'
}

/// Whether Markdown reads `c` as punctuation it may act on: the characters that
/// FlaskBB's renderer (mistune) and CommonMark both let a backslash escape.
fn markdown_punctuation(c: char) -> bool {
    matches!(
        c,
        '\\' | '`'
            | '*'
            | '_'
            | '{'
            | '}'
            | '['
            | ']'
            | '('
            | ')'
            | '#'
            | '+'
            | '-'
            | '.'
            | '!'
            | '>'
            | '~'
            | '|'
    )
}

/// Where the text goes: what a mask must survive there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Plain text (a topic's title).
    Plain,
    /// Markdown (a post's text).
    Markdown,
}

/// [`is_word_char`] for each ASCII byte.
const ASCII_WORD: [bool; 128] = {
    let mut t = [false; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = (b as u8).is_ascii_alphanumeric() || b == b'\'' as usize || b == b'_' as usize;
        b += 1;
    }
    t
};

impl WordFilter {
    /// A filter of `words` (lowercase).
    fn new(words: Vec<String>, action: Action, mask: char) -> WordFilter {
        let lengths = words.iter().fold(0, |l, w| l | length_bit(w.len()));
        WordFilter {
            words,
            action,
            mask,
            lengths,
        }
    }

    /// Whether `word` (a whole word of the text, `ascii` if all of it is) is listed;
    /// the listed form if so.
    fn listed(&self, word: &str, ascii: bool) -> Option<&str> {
        if ascii {
            if self.lengths & length_bit(word.len()) == 0 {
                return None;
            }
            // The listed words are lowercase, so an ASCII word matches one exactly
            // when the two are equal ignoring ASCII case: no lowercase copy needed.
            self.words
                .iter()
                .find(|w| w.len() == word.len() && w.eq_ignore_ascii_case(word))
        } else {
            let lower = word.to_lowercase();
            self.words.iter().find(|w| **w == lower)
        }
        .map(String::as_str)
    }

    /// `text` with listed words masked (`None` when nothing was listed, so nothing
    /// changes), and the first listed word found; the mask written as `field` needs.
    pub fn filter(&self, text: &str) -> (Option<String>, Option<String>) {
        self.filter_field(text, Field::Plain)
    }

    /// [`WordFilter::filter`] for text that goes to `field`.
    fn filter_field(&self, text: &str, field: Field) -> (Option<String>, Option<String>) {
        let escape = field == Field::Markdown && markdown_punctuation(self.mask);
        let mut out: Option<String> = None;
        let mut found: Option<String> = None;
        let bytes = text.as_bytes();
        // Where the text not yet copied to `out` starts.
        let mut copied = 0;
        let mut i = 0;
        // Posts are mostly ASCII: bytes are classified by table, chars decoded only
        // beyond ASCII.
        while i < bytes.len() {
            while i < bytes.len() && bytes[i].is_ascii() && !ASCII_WORD[usize::from(bytes[i])] {
                i += 1;
            }
            let (start, mut ascii) = (i, true);
            while let Some(&b) = bytes.get(i) {
                if b.is_ascii() {
                    if !ASCII_WORD[usize::from(b)] {
                        break;
                    }
                    i += 1;
                } else {
                    let c = text[i..].chars().next().unwrap_or(' ');
                    if !is_word_char(c) {
                        break;
                    }
                    ascii = false;
                    i += c.len_utf8();
                }
            }
            if start == i {
                // A character beyond ASCII that is not part of a word.
                i += text[i..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            // Underscores around a word are Markdown's emphasis (`_darn_`), not part
            // of it: the word is what they enclose. Inside a word they stay (`darn_it`).
            let whole = &text[start..i];
            let start = start + (whole.len() - whole.trim_start_matches('_').len());
            let word = text[start..i].trim_end_matches('_');
            if word.is_empty() {
                continue;
            }
            if let Some(listed) = self.listed(word, ascii) {
                found.get_or_insert_with(|| listed.to_owned());
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..start]);
                for _ in 0..word.chars().count() {
                    if escape {
                        out.push('\\');
                    }
                    out.push(self.mask);
                }
                copied = start + word.len();
            }
        }
        let out = out.map(|mut out| {
            out.push_str(&text[copied..]);
            out
        });
        (out, found)
    }

    /// The text to save in place of `text`, if it changes; a rejection if it must.
    fn apply(&self, text: &str, field: Field) -> HookResult<Option<String>> {
        match self.filter_field(text, field) {
            (_, Some(w)) if self.action == Action::Reject => Err(HookError::rejected(format!(
                "The text contains a word that is not allowed here: \"{w}\"."
            ))),
            (masked, _) => Ok(masked),
        }
    }
}

impl PostSaveBeforeHandler for WordFilter {
    fn post_save_before(&self, _cx: &Ctx<'_>, mut post: Post) -> HookResult<Post> {
        if let Some(masked) = self.apply(&post.content, Field::Markdown)? {
            post.content = masked.into();
        }
        Ok(post)
    }
}

impl TopicSaveBeforeHandler for WordFilter {
    fn topic_save_before(&self, _cx: &Ctx<'_>, mut topic: Topic) -> HookResult<Topic> {
        if let Some(masked) = self.apply(&topic.title, Field::Plain)? {
            topic.title = masked.into();
        }
        if let Some(content) = topic.content.as_ref().into_option() {
            if let Some(masked) = self.apply(content, Field::Markdown)? {
                topic.content = Some(masked.into()).into();
            }
        }
        Ok(topic)
    }
}

export_plugin! {
    plugin: WordFilter,
    name: "wordfilter",
    description: "Masks listed words in posts and topics, or rejects the save",
    hooks: [PostSaveBeforeHandler, TopicSaveBeforeHandler],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(action: Action) -> WordFilter {
        WordFilter::new(vec!["darn".into(), "heck".into()], action, '*')
    }

    #[test]
    fn masks_whole_words_case_insensitively() {
        let (out, found) = wf(Action::Mask).filter("Darn it, what the HECK; darnation stays.");
        assert_eq!(
            out.as_deref(),
            Some("**** it, what the ****; darnation stays.")
        );
        assert_eq!(found.as_deref(), Some("darn"));
    }

    #[test]
    fn words_at_either_end_and_beside_punctuation_are_found() {
        let f = wf(Action::Mask);
        assert_eq!(f.filter("heck").0.as_deref(), Some("****"));
        assert_eq!(f.filter("(darn)heck!").0.as_deref(), Some("(****)****!"));
        assert_eq!(f.filter("x darn").0.as_deref(), Some("x ****"));
        assert_eq!(
            f.filter("darn's heck_ darn_it darn").0.as_deref(),
            Some("darn's ****_ darn_it ****")
        );
        // Markdown's emphasis hides no word.
        assert_eq!(
            f.filter("_darn_ __heck__ _darn").0.as_deref(),
            Some("_****_ __****__ _****")
        );
    }

    #[test]
    fn words_longer_than_the_length_table_are_still_compared_whole() {
        let long = "a".repeat(70);
        let f = WordFilter::new(vec![long.clone()], Action::Mask, '*');
        assert_eq!(
            f.filter(&format!("x {long} y")).0,
            Some(format!("x {} y", "*".repeat(70)))
        );
        assert_eq!(f.filter(&"a".repeat(80)).0, None);
    }

    #[test]
    fn text_without_listed_words_is_left_as_it_is() {
        assert_eq!(
            wf(Action::Mask).filter("Nothing to see, darnation."),
            (None, None)
        );
        assert_eq!(wf(Action::Mask).filter(""), (None, None));
    }

    #[test]
    fn non_ascii_words_match_case_insensitively() {
        let f = WordFilter::new(vec!["größe".into(), "ärger".into()], Action::Mask, '#');
        let (out, found) = f.filter("Die GRÖSSE, die Größe und ÄRGER.");
        assert_eq!(out.as_deref(), Some("Die GRÖSSE, die ##### und #####."));
        assert_eq!(found.as_deref(), Some("größe"));
    }

    #[test]
    fn rejects_naming_the_word() {
        assert_eq!(
            wf(Action::Reject).apply("oh heck", Field::Markdown),
            Err(HookError::rejected(
                "The text contains a word that is not allowed here: \"heck\"."
            ))
        );
        assert_eq!(wf(Action::Reject).apply("all fine", Field::Plain), Ok(None));
    }

    #[test]
    fn a_mask_markdown_would_read_is_escaped_in_markdown_only() {
        let f = wf(Action::Mask);
        assert_eq!(
            f.apply("What a darn day. Darn it!", Field::Markdown),
            Ok(Some(r"What a \*\*\*\* day. \*\*\*\* it!".into()))
        );
        assert_eq!(
            f.apply("What a darn day", Field::Plain),
            Ok(Some("What a **** day".into()))
        );
        for mask in ['_', '~', '`', '#', '-', '>', '|', '\\'] {
            let f = WordFilter::new(vec!["heck".into()], Action::Mask, mask);
            let escaped: String = std::iter::repeat_n(format!("\\{mask}"), 4).collect();
            assert_eq!(
                f.apply("heck", Field::Markdown),
                Ok(Some(escaped)),
                "{mask}"
            );
        }
        // A mask Markdown does not act on is written as it is.
        let f = WordFilter::new(vec!["heck".into()], Action::Mask, '■');
        assert_eq!(
            f.apply("oh heck", Field::Markdown),
            Ok(Some("oh ■■■■".into()))
        );
    }
}
