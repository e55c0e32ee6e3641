//! `wordfilter`: checks posts and topics before they are saved
//! (`flaskbb_event_post_save_before`, `flaskbb_event_topic_save_before`) for listed
//! words, matched whole and case-insensitively, and masks them or rejects the save.

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
    /// changes), and the first listed word found.
    pub fn filter(&self, text: &str) -> (Option<String>, Option<String>) {
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
            let word = &text[start..i];
            if let Some(listed) = self.listed(word, ascii) {
                found.get_or_insert_with(|| listed.to_owned());
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..start]);
                out.extend(std::iter::repeat_n(self.mask, word.chars().count()));
                copied = i;
            }
        }
        let out = out.map(|mut out| {
            out.push_str(&text[copied..]);
            out
        });
        (out, found)
    }

    /// The text to save in place of `text`, if it changes; a rejection if it must.
    fn apply(&self, text: &str) -> HookResult<Option<String>> {
        match self.filter(text) {
            (_, Some(w)) if self.action == Action::Reject => Err(HookError::rejected(format!(
                "The text contains a word that is not allowed here: \"{w}\"."
            ))),
            (masked, _) => Ok(masked),
        }
    }
}

impl PostSaveBeforeHandler for WordFilter {
    fn post_save_before(&self, _cx: &Ctx<'_>, mut post: Post) -> HookResult<Post> {
        if let Some(masked) = self.apply(&post.content)? {
            post.content = masked.into();
        }
        Ok(post)
    }
}

impl TopicSaveBeforeHandler for WordFilter {
    fn topic_save_before(&self, _cx: &Ctx<'_>, mut topic: Topic) -> HookResult<Topic> {
        if let Some(masked) = self.apply(&topic.title)? {
            topic.title = masked.into();
        }
        if let Some(content) = topic.content.as_ref().into_option() {
            if let Some(masked) = self.apply(content)? {
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
            f.filter("darn's heck_ darn").0.as_deref(),
            Some("darn's heck_ ****")
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
            wf(Action::Reject).apply("oh heck"),
            Err(HookError::rejected(
                "The text contains a word that is not allowed here: \"heck\"."
            ))
        );
        assert_eq!(wf(Action::Reject).apply("all fine"), Ok(None));
    }
}
