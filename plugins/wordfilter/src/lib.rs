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
}

impl PluginInstance for WordFilter {
    fn new(init: &Init) -> Result<Self, String> {
        let c: Config = init.config()?;
        if c.words.iter().any(|w| w.trim().is_empty()) {
            return Err("config key words: an empty word would match nothing; remove it".into());
        }
        Ok(WordFilter {
            words: c.words.iter().map(|w| w.to_lowercase()).collect(),
            action: c.action,
            mask: c.mask,
        })
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '_'
}

impl WordFilter {
    /// Whether `word` (a whole word of the text) is listed; the listed form if so.
    fn listed(&self, word: &str) -> Option<&str> {
        if word.is_ascii() {
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
        // Where the text not yet copied to `out` starts, and where the current word does.
        let mut copied = 0;
        let mut word_start = None;
        let mut check = |start: usize, end: usize, copied: &mut usize| {
            let word = &text[start..end];
            if let Some(w) = self.listed(word) {
                found.get_or_insert_with(|| w.to_owned());
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[*copied..start]);
                out.extend(std::iter::repeat_n(self.mask, word.chars().count()));
                *copied = end;
            }
        };
        for (i, c) in text.char_indices() {
            match (is_word_char(c), word_start) {
                (true, None) => word_start = Some(i),
                (false, Some(start)) => {
                    check(start, i, &mut copied);
                    word_start = None;
                }
                _ => {}
            }
        }
        if let Some(start) = word_start {
            check(start, text.len(), &mut copied);
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
        WordFilter {
            words: vec!["darn".into(), "heck".into()],
            action,
            mask: '*',
        }
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
    fn text_without_listed_words_is_left_as_it_is() {
        assert_eq!(
            wf(Action::Mask).filter("Nothing to see, darnation."),
            (None, None)
        );
        assert_eq!(wf(Action::Mask).filter(""), (None, None));
    }

    #[test]
    fn non_ascii_words_match_case_insensitively() {
        let f = WordFilter {
            words: vec!["größe".into(), "ärger".into()],
            action: Action::Mask,
            mask: '#',
        };
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
