//! Range templates: a template is parsed once and expanded lazily into names.

use std::fmt::Write as _;

/// The default cap on the number of names one template may expand to.
pub const DEFAULT_MAX_TEMPLATE_NAMES: u64 = 10_000_000;

/// Why a template was refused. Positions are 1-based character columns in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{` without its `}`, or a `}` without its `{`.
    #[error("unbalanced '{brace}' at column {column}")]
    Unbalanced {
        /// The brace that has no partner.
        brace: char,
        /// Where it stands.
        column: usize,
    },
    /// A `{` inside braces.
    #[error("nested '{{' at column {column}: groups cannot be nested")]
    Nested {
        /// Where the inner brace stands.
        column: usize,
    },
    /// `{}`.
    #[error("empty braces at column {column}")]
    Empty {
        /// Where the group starts.
        column: usize,
    },
    /// Braces holding neither a range nor a list, such as `{abc}` or `{1..}`.
    #[error(
        "malformed group {group:?} at column {column}: expected {{START..END}}, {{START..END..STEP}} or {{a,b,...}}"
    )]
    Malformed {
        /// The group as written, braces included.
        group: String,
        /// Where the group starts.
        column: usize,
    },
    /// A list with an empty item, such as `{a,,b}`.
    #[error("empty item in list {group:?} at column {column}")]
    EmptyItem {
        /// The group as written, braces included.
        group: String,
        /// Where the group starts.
        column: usize,
    },
    /// A list naming one item twice, such as `{a,b,a}`: its objects would collide.
    #[error("item {item:?} twice in list {group:?} at column {column}")]
    DuplicateItem {
        /// The item.
        item: String,
        /// The group as written, braces included.
        group: String,
        /// Where the group starts.
        column: usize,
    },
    /// A range bound or step that is not a decimal number, such as `{a..z}`.
    #[error("not a number: {text:?} in range {group:?} at column {column}")]
    NotANumber {
        /// The offending text.
        text: String,
        /// The group as written, braces included.
        group: String,
        /// Where the group starts.
        column: usize,
    },
    /// A range bound or step too large for 64 bits.
    #[error("number too large: {text:?} in range {group:?} at column {column}")]
    Overflow {
        /// The offending text.
        text: String,
        /// The group as written, braces included.
        group: String,
        /// Where the group starts.
        column: usize,
    },
    /// `START > END`.
    #[error("range {group:?} at column {column} runs backwards: {start} > {end}")]
    Backwards {
        /// The group as written, braces included.
        group: String,
        /// Where the group starts.
        column: usize,
        /// The start bound.
        start: u64,
        /// The end bound.
        end: u64,
    },
    /// A step of 0.
    #[error("range {group:?} at column {column} has a step of 0")]
    ZeroStep {
        /// The group as written, braces included.
        group: String,
        /// Where the group starts.
        column: usize,
    },
    /// The expansion would exceed the cap on names.
    #[error("template expands to more than {limit} names (the limit)")]
    TooManyNames {
        /// The cap in force.
        limit: u64,
    },
}

/// Range templates: `https://host/shard-{0000..0999}.tar` expanded lazily into names.
///
/// The grammar is AIStore's, plus bash-style lists:
///
/// - `{START..END}` and `{START..END..STEP}`: decimal, non-negative, `START <= END`, `STEP > 0`.
///   Zero padding is kept: the width is that of the *shorter* of the two bounds as written
///   (`{0000..0999}` gives `0000`..`0999`, `{001..10}` gives `01`..`10`), as AIStore does.
/// - `{a,b,c}`: a list of literal items (AIStore rejects these; users expect them).
/// - Several groups in one template expand as a cartesian product, the last group fastest.
/// - Text outside braces is literal. A template without braces expands to itself.
///
/// Expansion never materialises the names: [`Template`] knows its length up front and
/// [`Names`] produces one name at a time. The number of names is capped
/// ([`DEFAULT_MAX_TEMPLATE_NAMES`], or [`Template::parse_with_limit`]) so a typo cannot become a job of
/// 10²⁰ objects.
///
/// ```
/// use haul::Template;
///
/// let t = Template::parse("shard-{00..02}-{a,b}.tar")?;
/// assert_eq!(t.len(), 6);
/// let names: Vec<String> = t.iter().collect();
/// assert_eq!(names[..3], ["shard-00-a.tar", "shard-00-b.tar", "shard-01-a.tar"]);
/// # Ok::<(), haul::TemplateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
    len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Range {
        start: u64,
        step: u64,
        count: u64,
        width: usize,
    },
    List(Vec<String>),
}

impl Segment {
    fn count(&self) -> u64 {
        match self {
            Segment::Literal(_) => 1,
            Segment::Range { count, .. } => *count,
            Segment::List(items) => items.len() as u64,
        }
    }

    fn write(&self, index: u64, out: &mut String) {
        match self {
            Segment::Literal(text) => out.push_str(text),
            Segment::Range {
                start, step, width, ..
            } => {
                let value = start + index * step;
                // Writing to a String cannot fail.
                let _ = write!(out, "{value:0width$}");
            }
            Segment::List(items) => out.push_str(&items[index as usize]),
        }
    }
}

impl Template {
    /// Parses `source` with the default cap of [`DEFAULT_MAX_TEMPLATE_NAMES`] names.
    ///
    /// # Errors
    ///
    /// A [`TemplateError`] that says what is wrong and at which column.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Template::parse_with_limit(source, DEFAULT_MAX_TEMPLATE_NAMES)
    }

    /// Parses `source`, refusing templates that expand to more than `max_names` names.
    ///
    /// # Errors
    ///
    /// A [`TemplateError`] that says what is wrong and at which column.
    pub fn parse_with_limit(source: &str, max_names: u64) -> Result<Template, TemplateError> {
        let segments = parse_segments(source)?;
        let mut len: u64 = 1;
        for segment in &segments {
            len = len
                .checked_mul(segment.count())
                .filter(|&n| n <= max_names)
                .ok_or(TemplateError::TooManyNames { limit: max_names })?;
        }
        Ok(Template {
            source: source.to_owned(),
            segments,
            len,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// How many names the template expands to.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the template expands to no names. Always false: every group holds at least one
    /// item, so a valid template has at least one name.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `index`-th name (0-based, in expansion order), or `None` past the end.
    ///
    /// ```
    /// let t = haul::Template::parse("x{1..3}{a,b}")?;
    /// assert_eq!(t.get(3).as_deref(), Some("x2b"));
    /// assert_eq!(t.get(6), None);
    /// # Ok::<(), haul::TemplateError>(())
    /// ```
    pub fn get(&self, index: u64) -> Option<String> {
        if index >= self.len {
            return None;
        }
        let mut digits = vec![0u64; self.segments.len()];
        let mut rest = index;
        for (digit, segment) in digits.iter_mut().zip(&self.segments).rev() {
            let count = segment.count();
            *digit = rest % count;
            rest /= count;
        }
        let mut out = String::with_capacity(self.source.len() + 8);
        for (segment, &digit) in self.segments.iter().zip(&digits) {
            segment.write(digit, &mut out);
        }
        Some(out)
    }

    /// Two indices whose URLs imply the same object name, when a group varies only a part
    /// of the URL that the name does not come from: a directory (`/{a,b}/file.bin`) or the
    /// query (`/file.bin?part={1..3}`). The name is the last path segment, so such a job
    /// would land every object under one name.
    ///
    /// ```
    /// let t = haul::Template::parse("https://h/{a,b}/f-{1..3}.bin")?;
    /// assert_eq!(t.same_name_pair(), Some((0, 3)));
    /// let t = haul::Template::parse("https://h/d/f-{1..3}.bin?v=1")?;
    /// assert_eq!(t.same_name_pair(), None);
    /// # Ok::<(), haul::TemplateError>(())
    /// ```
    pub fn same_name_pair(&self) -> Option<(u64, u64)> {
        // The path ends at the first '?' or '#'; the name starts after the last '/' before it.
        // Both fall inside literals, so comparing segment indices places each group.
        let literal = |i: usize| match &self.segments[i] {
            Segment::Literal(text) => Some(text.as_str()),
            _ => None,
        };
        let n = self.segments.len();
        let path_end = (0..n)
            .find(|&i| literal(i).is_some_and(|t| t.contains(['?', '#'])))
            .unwrap_or(n);
        // The literal that ends the path counts up to its '?' or '#'.
        let path_part = |i: usize| {
            literal(i).map(|t| {
                if i == path_end {
                    t.split(['?', '#']).next().unwrap_or("")
                } else {
                    t
                }
            })
        };
        let name_start = (0..=path_end.min(n.saturating_sub(1)))
            .rev()
            .find(|&i| path_part(i).is_some_and(|t| t.contains('/')));
        let mut stride: u64 = 1;
        for i in (0..n).rev() {
            let count = self.segments[i].count();
            let in_name = name_start.is_none_or(|start| i > start) && i < path_end;
            if count > 1 && !in_name {
                return Some((0, stride));
            }
            stride = stride.saturating_mul(count);
        }
        None
    }

    /// A lazy iterator over the names, in expansion order (the last group varies fastest).
    pub fn iter(&self) -> Names {
        self.clone().into_iter()
    }
}

impl IntoIterator for Template {
    type Item = String;
    type IntoIter = Names;

    fn into_iter(self) -> Names {
        let digits = vec![0; self.segments.len()];
        Names {
            template: self,
            digits,
            next: 0,
        }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// The names of a [`Template`], produced one at a time. Its length is exact.
#[derive(Debug, Clone)]
pub struct Names {
    template: Template,
    /// The odometer: the current index within each segment.
    digits: Vec<u64>,
    next: u64,
}

impl Names {
    /// The index of the next name this iterator yields.
    pub fn position(&self) -> u64 {
        self.next
    }

    fn advance(&mut self) {
        for (digit, segment) in self.digits.iter_mut().zip(&self.template.segments).rev() {
            *digit += 1;
            if *digit < segment.count() {
                return;
            }
            *digit = 0;
        }
    }
}

impl Iterator for Names {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.next >= self.template.len {
            return None;
        }
        let mut out = String::with_capacity(self.template.source.len() + 8);
        for (segment, &digit) in self.template.segments.iter().zip(&self.digits) {
            segment.write(digit, &mut out);
        }
        self.next += 1;
        self.advance();
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.template.len - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Names {}

fn parse_segments(source: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut chars = source.char_indices().enumerate();
    while let Some((column0, (_, c))) = chars.next() {
        match c {
            '}' => {
                return Err(TemplateError::Unbalanced {
                    brace: '}',
                    column: column0 + 1,
                });
            }
            '{' => {
                let open = column0 + 1;
                let mut body = String::new();
                let mut closed = false;
                for (inner0, (_, c)) in chars.by_ref() {
                    match c {
                        '}' => {
                            closed = true;
                            break;
                        }
                        '{' => return Err(TemplateError::Nested { column: inner0 + 1 }),
                        _ => body.push(c),
                    }
                }
                if !closed {
                    return Err(TemplateError::Unbalanced {
                        brace: '{',
                        column: open,
                    });
                }
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(parse_group(&body, open)?);
            }
            _ => literal.push(c),
        }
    }
    if !literal.is_empty() || segments.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

fn parse_group(body: &str, column: usize) -> Result<Segment, TemplateError> {
    let group = || format!("{{{body}}}");
    if body.is_empty() {
        return Err(TemplateError::Empty { column });
    }
    // A comma makes a list (a range never has one), so `{a,..}` lists `a` and `..`.
    if body.contains(',') {
        let items: Vec<String> = body.split(',').map(str::to_owned).collect();
        if items.iter().any(String::is_empty) {
            return Err(TemplateError::EmptyItem {
                group: group(),
                column,
            });
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(item) = items.iter().find(|item| !seen.insert(item.as_str())) {
            return Err(TemplateError::DuplicateItem {
                item: item.clone(),
                group: group(),
                column,
            });
        }
        return Ok(Segment::List(items));
    }
    if body.contains("..") {
        let parts: Vec<&str> = body.split("..").collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(TemplateError::Malformed {
                group: group(),
                column,
            });
        }
        let number = |text: &str| -> Result<u64, TemplateError> {
            if !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TemplateError::NotANumber {
                    text: text.to_owned(),
                    group: group(),
                    column,
                });
            }
            text.parse().map_err(|_| TemplateError::Overflow {
                text: text.to_owned(),
                group: group(),
                column,
            })
        };
        let start = number(parts[0])?;
        let end = number(parts[1])?;
        let step = match parts.get(2) {
            Some(text) => number(text)?,
            None => 1,
        };
        if start > end {
            return Err(TemplateError::Backwards {
                group: group(),
                column,
                start,
                end,
            });
        }
        if step == 0 {
            return Err(TemplateError::ZeroStep {
                group: group(),
                column,
            });
        }
        return Ok(Segment::Range {
            start,
            step,
            count: (end - start) / step + 1,
            width: parts[0].len().min(parts[1].len()),
        });
    }
    Err(TemplateError::Malformed {
        group: group(),
        column,
    })
}
