//! The case-insensitive tree of keys and typed values that `.reg` files (and, later, the live
//! registry on Windows) are applied onto.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{RegError, Warning};
use crate::value::RegValueData;

/// The five predefined root keys, spelled as `.reg` files spell them.
pub const ROOT_KEYS: [&str; 5] = [
    "HKEY_LOCAL_MACHINE",
    "HKEY_CURRENT_USER",
    "HKEY_CLASSES_ROOT",
    "HKEY_USERS",
    "HKEY_CURRENT_CONFIG",
];

/// Where a value was set: a `.reg` file and the 1-based line its statement starts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file, as it was given to [`RegistryTree::apply_file`] / [`RegistryTree::apply_str`].
    pub file: PathBuf,
    /// 1-based line of the statement (the first line of a continued hex list).
    pub line: usize,
}

/// One named value of a key.
#[derive(Debug, Clone)]
pub struct RegValue {
    name: String,
    /// `name` case-folded once, so lookups don't re-fold every value.
    folded: String,
    data: RegValueData,
    origin: Option<Origin>,
    /// Tree-wide assignment counter: tells which of two values was set last.
    seq: u64,
}

impl RegValue {
    /// The value's name as first spelled; `""` is the default value (`@`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The typed data.
    pub fn data(&self) -> &RegValueData {
        &self.data
    }

    /// Where the data was last set, when it came from a file.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// Order of assignment within the tree: a later assignment has a larger number.
    pub fn sequence(&self) -> u64 {
        self.seq
    }
}

impl PartialEq for RegValue {
    /// Content equality: name spelling and data; not where or when it was set.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.data == other.data
    }
}

impl Eq for RegValue {}

/// A key: its name as first spelled, values in assignment order, subkeys sorted case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegKey {
    name: String,
    values: Vec<RegValue>,
    subkeys: BTreeMap<String, RegKey>,
}

impl RegKey {
    fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    /// The key's own name (one path segment) as first spelled.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The values in the order they were first created.
    pub fn values(&self) -> &[RegValue] {
        &self.values
    }

    /// The value called `name` (case-insensitive), if set.
    ///
    /// `""` is the default value (`@=` in `.reg` files); `"@"` is a value literally named `@`.
    pub fn value(&self, name: &str) -> Option<&RegValue> {
        let folded = fold(name);
        self.values.iter().find(|v| v.folded == folded)
    }

    /// The direct subkeys, sorted case-insensitively.
    pub fn subkeys(&self) -> impl Iterator<Item = &RegKey> {
        self.subkeys.values()
    }

    /// The direct subkey called `name` (case-insensitive).
    pub fn subkey(&self, name: &str) -> Option<&RegKey> {
        self.subkeys.get(&fold(name))
    }

    fn subkey_mut(&mut self, name: &str) -> Option<&mut RegKey> {
        self.subkeys.get_mut(&fold(name))
    }

    /// Sets a value; an existing value keeps its spelling and position (as in the registry) and gets
    /// the new data and origin.
    fn set(&mut self, name: &str, data: RegValueData, origin: Option<Origin>, seq: u64) {
        let folded = fold(name);
        if let Some(existing) = self.values.iter_mut().find(|v| v.folded == folded) {
            existing.data = data;
            existing.origin = origin;
            existing.seq = seq;
        } else {
            self.values.push(RegValue {
                name: name.to_string(),
                folded,
                data,
                origin,
                seq,
            });
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        let folded = fold(name);
        let before = self.values.len();
        self.values.retain(|v| v.folded != folded);
        before != self.values.len()
    }
}

/// Case folding as the registry compares names: per character upper-casing, leaving characters whose
/// upper case is several characters (like `ß`) alone.
pub(crate) fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(single), None) => single,
                _ => c,
            }
        })
        .collect()
}

/// A key path split into its canonical root name and the remaining segments.
///
/// `\\` and a trailing `\` are tolerated (empty segments are dropped), as regedit does.
/// Roots may be spelled in any case; in [`RegistryTree::key`] lookups (not in `.reg` files) the
/// short forms `HKLM`, `HKCU`, `HKCR`, `HKU` and `HKCC` are accepted too.
pub(crate) fn split_path(
    path: &str,
    allow_short_roots: bool,
) -> Result<(&'static str, Vec<&str>), String> {
    let mut segments = path.split('\\').filter(|s| !s.is_empty());
    let Some(root) = segments.next() else {
        return Err("empty key name".to_string());
    };
    let canonical = ROOT_KEYS
        .iter()
        .find(|r| r.eq_ignore_ascii_case(root))
        .copied()
        .or_else(|| {
            let short = [
                ("HKLM", "HKEY_LOCAL_MACHINE"),
                ("HKCU", "HKEY_CURRENT_USER"),
                ("HKCR", "HKEY_CLASSES_ROOT"),
                ("HKU", "HKEY_USERS"),
                ("HKCC", "HKEY_CURRENT_CONFIG"),
            ];
            short
                .iter()
                .find(|(s, _)| allow_short_roots && s.eq_ignore_ascii_case(root))
                .map(|(_, long)| *long)
        });
    match canonical {
        Some(root) => Ok((root, segments.collect())),
        None => Err(format!(
            "unknown root key {root:?} (expected one of {})",
            ROOT_KEYS.join(", ")
        )),
    }
}

/// A registry: case-insensitive keys holding typed values, onto which `.reg` files are applied in
/// order, as `reg import` would apply them to a live registry.
///
/// The tree does not depend on `.reg` text: values carry an optional [`Origin`], and the live
/// registry on Windows could fill the same tree through [`RegistryTree::set_value`] (not implemented
/// yet: a `winreg`-based loader would walk `HKLM\...\DHCPServer\Parameters` and call `set_value`
/// with `origin = None`).
///
/// Equality compares content (key and value names as spelled, and data), not origins.
#[derive(Debug, Clone, Default)]
pub struct RegistryTree {
    /// Holds the root keys as its subkeys; has no name and no values.
    top: RegKey,
    next_seq: u64,
}

impl PartialEq for RegistryTree {
    fn eq(&self, other: &Self) -> bool {
        self.top == other.top
    }
}

impl Eq for RegistryTree {}

impl RegistryTree {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree from `.reg` files applied in the order given (as `reg import` of each in turn), with
    /// the warnings of all of them; stops at the first file that cannot be read or has a bad header.
    pub fn from_files<P: AsRef<Path>>(
        paths: &[P],
    ) -> Result<(RegistryTree, Vec<Warning>), RegError> {
        let mut tree = RegistryTree::new();
        let mut warnings = Vec::new();
        for path in paths {
            warnings.extend(tree.apply_file(path.as_ref())?);
        }
        Ok((tree, warnings))
    }

    /// Reads one `.reg` file and applies it onto this tree.
    ///
    /// Returns the warnings for lines that were skipped; fails (naming the file) when the file cannot
    /// be read or has no valid header, in which case the tree is left unchanged.
    pub fn apply_file(&mut self, path: &Path) -> Result<Vec<Warning>, RegError> {
        let bytes = std::fs::read(path).map_err(|source| RegError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        self.apply_bytes(&bytes, path)
    }

    /// Applies the raw bytes of a `.reg` file (any encoding [`crate::decode_reg_bytes`] detects);
    /// `origin` names the file in warnings and origins.
    pub fn apply_bytes(&mut self, bytes: &[u8], origin: &Path) -> Result<Vec<Warning>, RegError> {
        let (text, mut warnings) = crate::text::decode_reg_bytes(bytes, origin);
        warnings.extend(self.apply_str(&text, origin)?);
        Ok(warnings)
    }

    /// Applies `.reg` text (already decoded) onto this tree; `origin` names it in warnings and origins.
    pub fn apply_str(&mut self, text: &str, origin: &Path) -> Result<Vec<Warning>, RegError> {
        crate::parse::apply(self, text, origin)
    }

    /// The key at `path`, e.g. `HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services`
    /// (case-insensitive; `HKLM`-style short roots accepted).
    ///
    /// A path through `HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet` that does not exist as written is
    /// looked up in the offline-hive spelling: the control set named by `SYSTEM\Select\Current`, or
    /// else the lowest-numbered `ControlSetNNN`.
    pub fn key(&self, path: &str) -> Option<&RegKey> {
        self.key_candidates(path).into_iter().next()
    }

    /// The value `name` of the key at `path`. Where both the `CurrentControlSet` spelling and an
    /// offline `ControlSetNNN` spelling of the key hold the value, the one assigned last wins, so
    /// files mixing the two spellings still apply in order.
    pub fn value(&self, path: &str, name: &str) -> Option<&RegValue> {
        self.key_candidates(path)
            .into_iter()
            .filter_map(|key| key.value(name))
            .max_by_key(|v| v.seq)
    }

    /// The existing keys `path` can mean: as written first, then the offline control-set spelling.
    fn key_candidates(&self, path: &str) -> Vec<&RegKey> {
        let Ok((root, segments)) = split_path(path, true) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        if let Some(key) = self.walk(root, &segments) {
            found.push(key);
        }
        let is_current_control_set = root == "HKEY_LOCAL_MACHINE"
            && segments.len() >= 2
            && segments[0].eq_ignore_ascii_case("SYSTEM")
            && segments[1].eq_ignore_ascii_case("CurrentControlSet");
        if is_current_control_set {
            if let Some(control_set) = self.offline_control_set() {
                let mut aliased = segments.clone();
                aliased[1] = control_set;
                if let Some(key) = self.walk(root, &aliased) {
                    found.push(key);
                }
            }
        }
        found
    }

    /// The `ControlSetNNN` an offline SYSTEM export means by "current".
    fn offline_control_set(&self) -> Option<&str> {
        let system = self.walk("HKEY_LOCAL_MACHINE", &["SYSTEM"])?;
        let selected = system
            .subkey("Select")
            .and_then(|select| select.value("Current"))
            .and_then(|v| match v.data() {
                RegValueData::Dword(n) => Some(format!("ControlSet{n:03}")),
                _ => None,
            });
        if let Some(name) = selected {
            if let Some(key) = system.subkey(&name) {
                return Some(key.name());
            }
        }
        // BTreeMap order of folded names: ControlSet001 before ControlSet002.
        system
            .subkeys()
            .find(|k| is_numbered_control_set(k.name()))
            .map(RegKey::name)
    }

    fn walk(&self, root: &str, segments: &[&str]) -> Option<&RegKey> {
        let mut key = self.top.subkey(root)?;
        for segment in segments {
            key = key.subkey(segment)?;
        }
        Some(key)
    }

    /// The root keys present.
    pub fn roots(&self) -> impl Iterator<Item = &RegKey> {
        self.top.subkeys()
    }

    /// Creates the key at `path` and its missing parents (existing keys keep their spelling).
    pub fn create_key(&mut self, path: &str) -> Result<&mut RegKey, String> {
        let (root, segments) = split_path(path, true)?;
        Ok(self.create_segments(root, &segments))
    }

    pub(crate) fn create_segments(&mut self, root: &str, segments: &[&str]) -> &mut RegKey {
        let mut key = self
            .top
            .subkeys
            .entry(fold(root))
            .or_insert_with(|| RegKey::named(root));
        for segment in segments {
            key = key
                .subkeys
                .entry(fold(segment))
                .or_insert_with(|| RegKey::named(segment));
        }
        key
    }

    /// Deletes the key at `path` with its subtree; returns whether it existed. Root keys cannot be
    /// deleted (their subtree can be, key by key).
    pub fn delete_key(&mut self, path: &str) -> Result<bool, String> {
        let (root, segments) = split_path(path, true)?;
        self.delete_segments(root, &segments)
    }

    pub(crate) fn delete_segments(
        &mut self,
        root: &str,
        segments: &[&str],
    ) -> Result<bool, String> {
        let Some((last, parents)) = segments.split_last() else {
            return Err(format!("cannot delete the root key {root}"));
        };
        let Some(mut key) = self.top.subkey_mut(root) else {
            return Ok(false);
        };
        for segment in parents {
            match key.subkey_mut(segment) {
                Some(next) => key = next,
                None => return Ok(false),
            }
        }
        Ok(key.subkeys.remove(&fold(last)).is_some())
    }

    /// Sets value `name` (`""` = default value) of the key at `path`, creating the key; the last
    /// assignment wins and an existing value keeps its spelling.
    pub fn set_value(
        &mut self,
        path: &str,
        name: &str,
        data: RegValueData,
        origin: Option<Origin>,
    ) -> Result<(), String> {
        let (root, segments) = split_path(path, true)?;
        self.set_in(root, &segments, name, data, origin);
        Ok(())
    }

    pub(crate) fn set_in(
        &mut self,
        root: &str,
        segments: &[&str],
        name: &str,
        data: RegValueData,
        origin: Option<Origin>,
    ) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.create_segments(root, segments)
            .set(name, data, origin, seq);
    }

    /// Deletes value `name` of the key at `path`; returns whether it existed.
    pub fn delete_value(&mut self, path: &str, name: &str) -> Result<bool, String> {
        let (root, segments) = split_path(path, true)?;
        Ok(self.delete_in(root, &segments, name))
    }

    pub(crate) fn delete_in(&mut self, root: &str, segments: &[&str], name: &str) -> bool {
        let Some(mut key) = self.top.subkey_mut(root) else {
            return false;
        };
        for segment in segments {
            match key.subkey_mut(segment) {
                Some(next) => key = next,
                None => return false,
            }
        }
        key.remove(name)
    }

    /// Every key in depth-first pre-order with its full path (roots first, subkeys sorted).
    pub fn walk_keys(&self) -> Vec<(String, &RegKey)> {
        fn visit<'a>(prefix: &str, key: &'a RegKey, out: &mut Vec<(String, &'a RegKey)>) {
            let path = if prefix.is_empty() {
                key.name.clone()
            } else {
                format!("{prefix}\\{}", key.name)
            };
            out.push((path.clone(), key));
            for sub in key.subkeys.values() {
                visit(&path, sub, out);
            }
        }
        let mut out = Vec::new();
        for root in self.top.subkeys.values() {
            visit("", root, &mut out);
        }
        out
    }
}

fn is_numbered_control_set(name: &str) -> bool {
    // `get` rather than slicing: names come from files and may hold multi-byte characters.
    name.len() == "ControlSet001".len()
        && name
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("ControlSet"))
        && name
            .get(10..)
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_is_per_character_upper_case() {
        assert_eq!(fold("CalloutDlls"), fold("CALLOUTDLLS"));
        assert_eq!(fold("ß"), "ß");
        assert_eq!(fold("é"), "É");
    }

    #[test]
    fn paths_tolerate_doubled_and_trailing_backslashes() {
        let (root, segs) = split_path(r"hkey_local_machine\\A\B\", false).unwrap();
        assert_eq!(root, "HKEY_LOCAL_MACHINE");
        assert_eq!(segs, ["A", "B"]);
        assert!(split_path(r"HKLM\A", false).is_err());
        assert!(split_path(r"HKLM\A", true).is_ok());
        assert!(split_path("", true).is_err());
    }

    #[test]
    fn set_keeps_first_spelling_and_position() {
        let mut tree = RegistryTree::new();
        tree.set_value(r"HKCU\K", "Foo", RegValueData::Dword(1), None)
            .unwrap();
        tree.set_value(r"HKCU\K", "Bar", RegValueData::Dword(2), None)
            .unwrap();
        tree.set_value(r"hkcu\k", "FOO", RegValueData::Dword(3), None)
            .unwrap();
        let key = tree.key(r"HKEY_CURRENT_USER\K").unwrap();
        let names: Vec<_> = key.values().iter().map(|v| v.name()).collect();
        assert_eq!(names, ["Foo", "Bar"]);
        assert_eq!(key.value("foo").unwrap().data(), &RegValueData::Dword(3));
        assert!(tree.delete_value(r"HKCU\K", "fOO").unwrap());
        assert!(tree.key(r"HKCU\K").unwrap().value("Foo").is_none());
    }

    #[test]
    fn control_set_alias_follows_select_and_last_assignment() {
        let mut tree = RegistryTree::new();
        let params = r"HKLM\SYSTEM\ControlSet002\Services\X";
        tree.set_value(params, "v", RegValueData::Dword(2), None)
            .unwrap();
        tree.set_value(
            r"HKLM\SYSTEM\ControlSet001\Services\X",
            "v",
            RegValueData::Dword(1),
            None,
        )
        .unwrap();
        let live = r"HKLM\SYSTEM\CurrentControlSet\Services\X";
        // No Select key: the lowest-numbered control set.
        assert_eq!(
            tree.value(live, "v").unwrap().data(),
            &RegValueData::Dword(1)
        );
        tree.set_value(
            r"HKLM\SYSTEM\Select",
            "Current",
            RegValueData::Dword(2),
            None,
        )
        .unwrap();
        assert_eq!(
            tree.value(live, "v").unwrap().data(),
            &RegValueData::Dword(2)
        );
        // A later assignment through the live spelling wins over the offline one, and vice versa.
        tree.set_value(live, "v", RegValueData::Dword(9), None)
            .unwrap();
        assert_eq!(
            tree.value(live, "v").unwrap().data(),
            &RegValueData::Dword(9)
        );
        tree.set_value(params, "v", RegValueData::Dword(7), None)
            .unwrap();
        assert_eq!(
            tree.value(live, "v").unwrap().data(),
            &RegValueData::Dword(7)
        );
    }

    #[test]
    fn delete_key_removes_subtree_but_not_roots() {
        let mut tree = RegistryTree::new();
        tree.set_value(r"HKCU\A\B\C", "x", RegValueData::Dword(1), None)
            .unwrap();
        assert!(tree.delete_key(r"HKCU\a\b").unwrap());
        assert!(tree.key(r"HKCU\A").is_some());
        assert!(tree.key(r"HKCU\A\B").is_none());
        assert!(!tree.delete_key(r"HKCU\nope\deeper").unwrap());
        assert!(tree.delete_key("HKCU").is_err());
    }
}
