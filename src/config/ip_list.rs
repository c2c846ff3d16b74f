//! A configured list of addresses (`allow`, `deny`, `trusted_proxies`), decoded once into the
//! [`IpSet`] the gateway matches against, with the text as written kept beside it for printing
//! (`import-env`, the banner). The two are built together by [`IpList::push`] and nothing else
//! can change them, so a list that passed `check` is the list the gateway enforces: there is no
//! later parse that could fail and leave a deny list (or an allow list) silently empty.

use crate::access::{Cidr, IpRules, IpSet};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpList {
    written: Vec<String>,
    set: IpSet,
}

impl IpList {
    /// Every item parsed as a CIDR (or a single address).
    ///
    /// # Errors
    ///
    /// The first item that is not one, quoted, with the reason.
    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        let mut list = IpList::default();
        for item in items {
            let item = item.as_ref();
            list.push(item).map_err(|why| format!("{item:?}: {why}"))?;
        }
        Ok(list)
    }

    /// Add one item, parsed; the text is kept trimmed, as written otherwise.
    ///
    /// # Errors
    ///
    /// Why the item is not an address or CIDR (the list is unchanged then).
    pub fn push(&mut self, text: &str) -> Result<(), String> {
        let cidr: Cidr = text.parse()?;
        self.set.insert(cidr);
        self.written.push(text.trim().to_string());
        Ok(())
    }

    /// The set the gateway matches against.
    pub fn set(&self) -> &IpSet {
        &self.set
    }

    /// The items as written (trimmed), in order.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// The number of items as written (a duplicate counts twice).
    pub fn len(&self) -> usize {
        self.written.len()
    }
}

impl<const N: usize> PartialEq<[&str; N]> for IpList {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.written
            .iter()
            .map(String::as_str)
            .eq(other.iter().copied())
    }
}

/// Allow and deny lists (global, per route, per tenant, per forward key), already parsed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IpRulesConfig {
    pub allow: IpList,
    pub deny: IpList,
}

impl IpRulesConfig {
    /// The runtime rules: the decoded sets, so building them cannot fail.
    pub fn rules(&self) -> IpRules {
        IpRules::new(self.allow.set().clone(), self.deny.set().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_and_the_text_are_built_together() {
        let mut list = IpList::default();
        list.push(" 10.0.0.0/8 ").unwrap();
        assert!(list.push("10.0.0.1/8").is_err());
        assert!(list.push("nope").is_err());
        assert_eq!(list, ["10.0.0.0/8"]);
        assert_eq!(list.set(), &IpSet::parse_all(&["10.0.0.0/8"]).unwrap());
        let err = IpList::parse_all(&["1.2.3.4", "x"]).unwrap_err();
        assert!(err.starts_with("\"x\": "), "{err}");
    }
}
