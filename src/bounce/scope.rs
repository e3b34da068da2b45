//! Bounce scope: which lists share a member's bounce state.
//!
//! The state is keyed by a *scope key* derived from the site setting
//! `bounce.scope`, the list's domain and whether that domain is opaque:
//!
//! | scope    | transparent domain | opaque domain   |
//! |----------|--------------------|-----------------|
//! | `list`   | the list key       | the list key    |
//! | `domain` | `domain:NAME`      | `domain:NAME`   |
//! | `site`   | `site:`            | `domain:NAME`   |
//!
//! Lists with the same key share one record per member, and actions taken on
//! it (disabling delivery, removal) apply to the member in all of them. An
//! opaque domain thus never receives nor leaks state across domains.

pub use crate::model::BounceScope;

/// The scope key of a list: `list_key` is the list's store key, `domain` its
/// (lowercased) domain, `opaque` that domain's flag.
pub fn scope_key(scope: BounceScope, domain: &str, opaque: bool, list_key: &str) -> String {
    match scope {
        BounceScope::List => list_key.to_string(),
        BounceScope::Domain => format!("domain:{domain}"),
        BounceScope::Site if opaque => format!("domain:{domain}"),
        BounceScope::Site => "site:".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two lists per domain, a transparent domain `a.org` and `b.org`, and an
    /// opaque `x.org`: who shares with whom, for every scope.
    #[test]
    fn the_scope_matrix() {
        let lists = [
            ("a1@a.org", "a.org", false),
            ("a2@a.org", "a.org", false),
            ("b1@b.org", "b.org", false),
            ("x1@x.org", "x.org", true),
            ("x2@x.org", "x.org", true),
        ];
        let shares = |scope, i: usize, j: usize| {
            let (l1, d1, o1) = lists[i];
            let (l2, d2, o2) = lists[j];
            scope_key(scope, d1, o1, l1) == scope_key(scope, d2, o2, l2)
        };
        use BounceScope::*;
        // (scope, list i, list j, shared?)
        let expect = [
            // list: nobody shares, opaque or not.
            (List, 0, 1, false),
            (List, 0, 2, false),
            (List, 3, 4, false),
            (List, 0, 3, false),
            // domain: same domain shares, opaque or not; never across domains.
            (Domain, 0, 1, true),
            (Domain, 0, 2, false),
            (Domain, 3, 4, true),
            (Domain, 0, 3, false),
            // site: transparent domains share with each other; an opaque
            // domain shares within itself only, in both directions.
            (Site, 0, 1, true),
            (Site, 0, 2, true),
            (Site, 3, 4, true),
            (Site, 0, 3, false),
            (Site, 2, 4, false),
        ];
        for (scope, i, j, want) in expect {
            assert_eq!(shares(scope, i, j), want, "{scope:?} {i} {j}");
            assert_eq!(shares(scope, j, i), want, "symmetric: {scope:?} {j} {i}");
        }
        assert_eq!(scope_key(List, "a.org", false, "a1@a.org"), "a1@a.org");
        assert_eq!(
            scope_key(Domain, "a.org", false, "a1@a.org"),
            "domain:a.org"
        );
        assert_eq!(scope_key(Site, "a.org", false, "a1@a.org"), "site:");
        assert_eq!(scope_key(Site, "x.org", true, "x1@x.org"), "domain:x.org");
    }
}
