//! A one-line text input: every character typed or pasted lands in it (the
//! Go TUI swallowed `q`, `r`, `?` and digits as shortcuts, and dropped
//! pastes); the cursor moves by characters, never splitting one.

/// The editable text and its cursor (a character index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineInput {
    text: String,
    cursor: usize,
    max_chars: usize,
}

/// An edit to a [`LineInput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Insert one character.
    Char(char),
    /// Insert pasted text (line breaks become spaces).
    Paste(String),
    /// Delete before the cursor.
    Backspace,
    /// Delete under the cursor.
    Delete,
    /// Cursor one left.
    Left,
    /// Cursor one right.
    Right,
    /// Cursor to the start.
    Home,
    /// Cursor to the end.
    End,
    /// Delete the word before the cursor (ctrl+w).
    DeleteWord,
    /// Delete everything (ctrl+u).
    Clear,
}

impl LineInput {
    /// An input holding `text`, accepting at most `max_chars` characters.
    pub fn new(text: &str, max_chars: usize) -> Self {
        let text: String = text.chars().take(max_chars).collect();
        Self { cursor: text.chars().count(), text, max_chars }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text.char_indices().nth(chars).map_or(self.text.len(), |(i, _)| i)
    }

    fn insert(&mut self, s: &str) {
        let room = self.max_chars.saturating_sub(self.text.chars().count());
        let s: String = s.chars().filter(|c| !c.is_control()).take(room).collect();
        let at = self.byte_at(self.cursor);
        self.text.insert_str(at, &s);
        self.cursor += s.chars().count();
    }

    /// Applies an edit.
    pub fn apply(&mut self, edit: Edit) {
        let len = self.text.chars().count();
        match edit {
            Edit::Char(c) => self.insert(&c.to_string()),
            Edit::Paste(s) => self.insert(&s.replace(['\r', '\n', '\t'], " ")),
            Edit::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            Edit::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            Edit::Left => self.cursor = self.cursor.saturating_sub(1),
            Edit::Right => self.cursor = (self.cursor + 1).min(len),
            Edit::Home => self.cursor = 0,
            Edit::End => self.cursor = len,
            Edit::DeleteWord => {
                let chars: Vec<char> = self.text.chars().collect();
                let mut start = self.cursor;
                while start > 0 && chars[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && chars[start - 1] != ' ' {
                    start -= 1;
                }
                let (from, to) = (self.byte_at(start), self.byte_at(self.cursor));
                self.text.replace_range(from..to, "");
                self.cursor = start;
            }
            Edit::Clear => {
                self.text.clear();
                self.cursor = 0;
            }
            Edit::Backspace | Edit::Delete => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_pasting_and_deleting_keep_the_cursor_on_characters() {
        let mut i = LineInput::new("", 20);
        for c in "héllo".chars() {
            i.apply(Edit::Char(c));
        }
        i.apply(Edit::Left);
        i.apply(Edit::Backspace);
        assert_eq!((i.text(), i.cursor()), ("hélo", 3));
        i.apply(Edit::Paste("a\nb".into()));
        assert_eq!(i.text(), "héla bo");
        i.apply(Edit::End);
        i.apply(Edit::DeleteWord);
        assert_eq!(i.text(), "héla ");
        i.apply(Edit::Clear);
        assert_eq!((i.text(), i.cursor()), ("", 0));
    }

    #[test]
    fn the_length_cap_holds_for_pastes_and_control_characters_are_dropped() {
        let mut i = LineInput::new("abc", 5);
        i.apply(Edit::Paste("defgh".into()));
        assert_eq!(i.text(), "abcde");
        let mut j = LineInput::new("", 10);
        j.apply(Edit::Paste("a\u{1b}[31mb".into()));
        assert_eq!(j.text(), "a[31mb", "an escape sequence pasted into the TUI is not passed through");
    }
}
