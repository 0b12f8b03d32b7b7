//! Which field first claimed a secret name or a target path, for the duplicate and overlap
//! checks while the config is read.
//!
//! Kept in a few growing buffers (one text buffer, one vector of spans, one hash table of
//! indexes) instead of a map of small allocations: a config of 10,000 secrets makes 20,000
//! claims, and small allocations made while the config is read sit between the config's own
//! and, freed, leave holes that glibc keeps resident under everything allocated after them
//! (2 MiB of a 13 MiB heap at 10,000 secrets; docs/performance.md, "Scale"). Lookups are by
//! hash, so 100,000 claims cost no more per claim than 10.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// "No further link" in a chain.
const END: u32 = u32::MAX;

/// Secret names, compared exactly as written.
#[derive(Default)]
pub(super) struct NameClaims {
    spans: Spans,
}

impl NameClaims {
    /// Claims `name` for `place`; if it was claimed before, the place that claimed it first.
    pub(super) fn claim(&mut self, name: &str, place: &str) -> Option<&str> {
        let hash = hash_of(name);
        let found = self.spans.chain(hash).find(|&i| self.spans.key(i) == name);
        match found {
            Some(i) => Some(self.spans.place(i)),
            None => {
                self.spans.push(hash, name, place);
                None
            }
        }
    }
}

/// Target paths (directories, single files, and the `kubernetesSecret:` keys that share the
/// same check), compared as `Path` compares: by components, so "/a/b" and "/a/b/" are one.
#[derive(Default)]
pub(super) struct PathClaims {
    spans: Spans,
    /// Each ancestor of a path claimed as a single file, linked to that claim: answers "is a
    /// single file inside this directory?" without a scan.
    files_below: Chains,
}

impl PathClaims {
    /// Claims `path` for `place`; if it was claimed before, the place that claimed it first.
    /// `single_file`: the claim is a file, which a directory claimed later must not contain.
    pub(super) fn claim(&mut self, path: &Path, place: &str, single_file: bool) -> Option<&str> {
        if let Some(i) = self.index_of(path) {
            return Some(self.spans.place(i));
        }
        let text = path.to_string_lossy();
        let i = self.spans.push(hash_of(path), &text, place);
        if single_file {
            for dir in path.ancestors().skip(1) {
                self.files_below.push(hash_of(dir), i);
            }
        }
        None
    }

    fn index_of(&self, path: &Path) -> Option<u32> {
        self.spans
            .chain(hash_of(path))
            .find(|&i| Path::new(self.spans.key(i)) == path)
    }

    /// The claim of exactly `path`: the path as claimed, and its place.
    pub(super) fn get(&self, path: &Path) -> Option<(&Path, &str)> {
        let i = self.index_of(path)?;
        Some((Path::new(self.spans.key(i)), self.spans.place(i)))
    }

    /// A path claimed as a single file that is `dir` or inside it: the path and its place.
    pub(super) fn file_at_or_below(&self, dir: &Path) -> Option<(&Path, &str)> {
        let exact = self
            .index_of(dir)
            .filter(|&i| self.spans.place(i).ends_with(".path"));
        let below = || {
            self.files_below
                .items(hash_of(dir))
                .find(|&i| Path::new(self.spans.key(i)).starts_with(dir))
        };
        let i = exact.or_else(below)?;
        Some((Path::new(self.spans.key(i)), self.spans.place(i)))
    }
}

fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Keys and places back to back in one buffer, each claim two spans of it, found through a
/// chained hash index.
#[derive(Default)]
struct Spans {
    text: String,
    /// (key start, key end, place end): the place follows its key.
    spans: Vec<(u32, u32, u32)>,
    index: Chains,
}

impl Spans {
    /// Pushes a claim; its index.
    fn push(&mut self, hash: u64, key: &str, place: &str) -> u32 {
        let start = offset(self.text.len());
        self.text.push_str(key);
        let key_end = offset(self.text.len());
        self.text.push_str(place);
        let place_end = offset(self.text.len());
        let i = offset(self.spans.len());
        self.spans.push((start, key_end, place_end));
        self.index.push(hash, i);
        i
    }

    fn chain(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        self.index.items(hash)
    }

    fn key(&self, i: u32) -> &str {
        let (start, end, _) = self.spans[i as usize];
        &self.text[start as usize..end as usize]
    }

    fn place(&self, i: u32) -> &str {
        let (_, start, end) = self.spans[i as usize];
        &self.text[start as usize..end as usize]
    }
}

/// A config is far below 4 GiB of names and paths (it is read into memory whole, and its
/// size is bounded before that); saturating keeps this total.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX - 1)
}

/// Items by hash: the newest item of each hash in a table, each item linked to the one
/// pushed before it with the same hash.
#[derive(Default)]
struct Chains {
    heads: HashMap<u64, u32>,
    /// (item, next link)
    links: Vec<(u32, u32)>,
}

impl Chains {
    fn push(&mut self, hash: u64, item: u32) {
        let link = offset(self.links.len());
        let next = self.heads.insert(hash, link).unwrap_or(END);
        self.links.push((item, next));
    }

    /// Every item pushed with `hash` (and, rarely, another hash's items: the caller compares
    /// keys), newest first.
    fn items(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let mut link = self.heads.get(&hash).copied().unwrap_or(END);
        std::iter::from_fn(move || {
            let &(item, next) = self.links.get(link as usize)?;
            link = next;
            Some(item)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_claimed_once_exactly_as_written() {
        let mut names = NameClaims::default();
        assert_eq!(names.claim("db", "secrets[0]"), None);
        assert_eq!(names.claim("app/db", "secrets[1]"), None);
        assert_eq!(
            names.claim("app//db", "secrets[2]"),
            None,
            "names are not paths"
        );
        assert_eq!(names.claim("DB", "secrets[3]"), None);
        assert_eq!(names.claim("db", "secrets[4]"), Some("secrets[0]"));
        assert_eq!(names.claim("app/db", "secrets[5]"), Some("secrets[1]"));
    }

    #[test]
    fn paths_compare_by_components() {
        let mut paths = PathClaims::default();
        let dir = "secrets[0].targets[0].file.dir";
        assert_eq!(paths.claim(Path::new("/a/b"), dir, false), None);
        assert_eq!(
            paths.claim(Path::new("/a/b/"), "secrets[1].targets[0].file.dir", false),
            Some(dir)
        );
        assert_eq!(paths.claim(Path::new("/a//b"), "x", false), Some(dir));
        assert_eq!(
            paths.get(Path::new("/a/b/")),
            Some((Path::new("/a/b"), dir))
        );
        assert_eq!(paths.get(Path::new("/a")), None);
    }

    #[test]
    fn a_single_file_is_found_from_any_directory_above_it() {
        let mut paths = PathClaims::default();
        let file = "secrets[0].targets[0].singleFile.path";
        paths.claim(Path::new("/run/app/db.env"), file, true);
        paths.claim(
            Path::new("/run/other"),
            "secrets[1].targets[0].file.dir",
            false,
        );
        for dir in ["/run/app/db.env", "/run/app", "/run/app/", "/run", "/"] {
            assert_eq!(
                paths.file_at_or_below(Path::new(dir)),
                Some((Path::new("/run/app/db.env"), file)),
                "{dir}"
            );
        }
        for dir in ["/run/ap", "/run/app/db", "/run/other", "/srv"] {
            assert_eq!(paths.file_at_or_below(Path::new(dir)), None, "{dir}");
        }
    }

    #[test]
    fn many_claims_are_each_found() {
        let mut names = NameClaims::default();
        for i in 0..20_000 {
            assert_eq!(
                names.claim(&format!("s{i}"), &format!("secrets[{i}]")),
                None
            );
        }
        for i in (0..20_000).step_by(997) {
            let first = format!("secrets[{i}]");
            assert_eq!(names.claim(&format!("s{i}"), "again"), Some(first.as_str()));
        }
    }

    #[test]
    fn chains_keep_every_item_of_a_hash() {
        let mut chains = Chains::default();
        chains.push(7, 1);
        chains.push(8, 2);
        chains.push(7, 3);
        assert_eq!(chains.items(7).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(chains.items(8).collect::<Vec<_>>(), [2]);
        assert_eq!(chains.items(9).count(), 0);
    }
}
