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
    /// `text` with listed words masked, and the first listed word found.
    pub fn filter(&self, text: &str) -> (String, Option<String>) {
        let mut out = String::with_capacity(text.len());
        let mut found = None;
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String, found: &mut Option<String>| {
            if word.is_empty() {
                return;
            }
            let lower = word.to_lowercase();
            if let Some(w) = self.words.iter().find(|w| **w == lower) {
                found.get_or_insert_with(|| w.clone());
                out.extend(std::iter::repeat_n(self.mask, word.chars().count()));
            } else {
                out.push_str(word);
            }
            word.clear();
        };
        for c in text.chars() {
            if is_word_char(c) {
                word.push(c);
            } else {
                flush(&mut word, &mut out, &mut found);
                out.push(c);
            }
        }
        flush(&mut word, &mut out, &mut found);
        (out, found)
    }

    fn apply(&self, text: &str) -> HookResult<String> {
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
        post.content = self.apply(&post.content)?.into();
        Ok(post)
    }
}

impl TopicSaveBeforeHandler for WordFilter {
    fn topic_save_before(&self, _cx: &Ctx<'_>, mut topic: Topic) -> HookResult<Topic> {
        topic.title = self.apply(&topic.title)?.into();
        if let Some(c) = topic.content.as_ref().map(|c| c.to_string()).into_option() {
            topic.content = Some(self.apply(&c)?.into()).into();
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
        assert_eq!(out, "**** it, what the ****; darnation stays.");
        assert_eq!(found.as_deref(), Some("darn"));
    }

    #[test]
    fn rejects_naming_the_word() {
        assert_eq!(
            wf(Action::Reject).apply("oh heck"),
            Err(HookError::rejected(
                "The text contains a word that is not allowed here: \"heck\"."
            ))
        );
        assert_eq!(wf(Action::Reject).apply("all fine"), Ok("all fine".into()));
    }
}
