//! The order of one hook's impls, decided once per plugin generation.
//!
//! The rules (the README's "How chains are ordered"): wrappers and plain impls are ordered apart;
//! `tryfirst`, then normal, then `trylast`; higher priority first; at equal priority
//! pluggy's registration rule (newest first, except `trylast`: oldest first); then
//! `before`/`after` constraints override all of that. With no priorities and no
//! constraints the result is exactly pluggy's call order.
//!
//! Constraints are applied by a stable topological sort: impls keep their place in
//! the order above unless a constraint makes one wait; a waiting impl runs as soon as
//! everything it waits for has run.

use std::collections::{BTreeSet, HashSet};

use plugin_abi::abi::Tier;

/// One impl of one hook, before ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImplSpec {
    /// The instance's name.
    pub instance: String,
    /// Position in registration order: built-ins first, then `[[plugin]]` tables.
    pub reg_index: usize,
    /// Its tier (tryfirst, normal, trylast), as declared or overridden.
    pub tier: Tier,
    /// Its priority within the tier.
    pub priority: i32,
    /// Instances this impl must run before.
    pub before: Vec<String>,
    /// Instances this impl must run after.
    pub after: Vec<String>,
    /// Whether it wraps the other impls rather than being one of them.
    pub wrapper: bool,
}

/// A chain's impls in call order, wrappers apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ordered {
    /// Wrappers: their "before" parts run in this order, "after" parts in reverse.
    pub wrappers: Vec<ImplSpec>,
    /// The impls, in call order.
    pub impls: Vec<ImplSpec>,
}

/// Orders `specs` for `hook`. `known` is every configured instance name: a constraint
/// naming one that is known but not in this chain (it does not implement the hook, or
/// is disabled) has nothing to order and is ignored.
pub(crate) fn order(
    hook: &str,
    specs: Vec<ImplSpec>,
    known: &HashSet<String>,
) -> Result<Ordered, String> {
    let (wrappers, impls): (Vec<_>, Vec<_>) = specs.into_iter().partition(|s| s.wrapper);
    Ok(Ordered {
        wrappers: order_group(hook, wrappers, known)?,
        impls: order_group(hook, impls, known)?,
    })
}

/// pluggy's call order with priorities: the sort key of one impl.
fn base_key(s: &ImplSpec) -> (Tier, i64, i64) {
    let reg = s.reg_index as i64;
    let tie = if s.tier == Tier::TRYLAST { reg } else { -reg };
    (s.tier, -i64::from(s.priority), tie)
}

fn order_group(
    hook: &str,
    mut specs: Vec<ImplSpec>,
    known: &HashSet<String>,
) -> Result<Vec<ImplSpec>, String> {
    specs.sort_by_key(base_key);
    let n = specs.len();
    let index_of = |name: &str| specs.iter().position(|s| s.instance == name);
    // edges[a] holds b when a must run before b.
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, s) in specs.iter().enumerate() {
        for (list, key) in [(&s.before, "before"), (&s.after, "after")] {
            for other in list {
                if !known.contains(other) {
                    return Err(format!(
                        "hook {hook}: instance {:?} has {key} = [{other:?}], but no instance is named {other:?}",
                        s.instance
                    ));
                }
                if other == &s.instance {
                    return Err(format!(
                        "hook {hook}: instance {:?} names itself in {key}",
                        s.instance
                    ));
                }
                if let Some(j) = index_of(other) {
                    if key == "before" {
                        edges[i].insert(j);
                    } else {
                        edges[j].insert(i);
                    }
                }
            }
        }
    }
    let mut indegree = vec![0usize; n];
    for outs in &edges {
        for &j in outs {
            indegree[j] += 1;
        }
    }
    // Kahn's algorithm, always taking the earliest ready impl in the base order, so
    // constraints move only what they must.
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some(next) = (0..n).find(|&i| !done[i] && indegree[i] == 0) else {
            return Err(format!(
                "hook {hook}: before/after constraints form a cycle: {}",
                describe_cycle(&specs, &edges, &done)
            ));
        };
        done[next] = true;
        for &j in &edges[next] {
            indegree[j] -= 1;
        }
        out.push(next);
    }
    let mut slots: Vec<Option<ImplSpec>> = specs.into_iter().map(Some).collect();
    Ok(out.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// Names one cycle among the impls not yet placed, e.g. `a -> b -> a`.
fn describe_cycle(specs: &[ImplSpec], edges: &[BTreeSet<usize>], done: &[bool]) -> String {
    let start = (0..specs.len()).find(|&i| !done[i]).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    while let Some(&next) = edges[cur].iter().find(|&&j| !done[j]) {
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let cycle: Vec<&str> = path[pos..]
                .iter()
                .chain([&next])
                .map(|&i| specs[i].instance.as_str())
                .collect();
            return cycle.join(" -> ");
        }
        path.push(next);
        cur = next;
    }
    path.iter()
        .map(|&i| specs[i].instance.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    //! pluggy's own ordering cases (testing/test_hookcaller.py), ported: pluggy keeps
    //! `_hookimpls` in registration-derived order and calls it reversed; the lists
    //! asserted here are call order, i.e. pluggy's expected lists reversed.

    use super::*;

    struct Reg {
        specs: Vec<ImplSpec>,
    }

    impl Reg {
        fn new() -> Self {
            Reg { specs: Vec::new() }
        }
        fn add(&mut self, name: &str, tier: Tier, wrapper: bool) -> &mut ImplSpec {
            let reg_index = self.specs.len();
            self.specs.push(ImplSpec {
                instance: name.into(),
                reg_index,
                tier,
                priority: 0,
                before: vec![],
                after: vec![],
                wrapper,
            });
            self.specs.last_mut().unwrap()
        }
        fn plain(&mut self, name: &str) -> &mut ImplSpec {
            self.add(name, Tier::NORMAL, false)
        }
        fn known(&self) -> HashSet<String> {
            self.specs.iter().map(|s| s.instance.clone()).collect()
        }
        fn order(&self) -> Result<Ordered, String> {
            order("flaskbb_authenticate", self.specs.clone(), &self.known())
        }
        fn calls(&self) -> Vec<String> {
            let o = self.order().unwrap();
            o.wrappers
                .iter()
                .chain(o.impls.iter())
                .map(|s| s.instance.clone())
                .collect()
        }
    }

    #[test]
    fn unmarked_impls_run_newest_first() {
        // pluggy test_adding_nonwrappers: _hookimpls == [he_method1, he_method2, he_method3]
        let mut r = Reg::new();
        r.plain("m1");
        r.plain("m2");
        r.plain("m3");
        assert_eq!(r.calls(), ["m3", "m2", "m1"]);
    }

    #[test]
    fn trylast_impls_run_after_the_rest_oldest_first() {
        // pluggy test_adding_nonwrappers_trylast: _hookimpls == [m1(trylast), middle, b]
        let mut r = Reg::new();
        r.plain("middle");
        r.add("m1", Tier::TRYLAST, false);
        r.plain("b");
        assert_eq!(r.calls(), ["b", "middle", "m1"]);
    }

    #[test]
    fn trylast_registered_late_still_runs_last_oldest_first() {
        // pluggy test_adding_nonwrappers_trylast3: a, b(trylast), c, d(trylast)
        // -> _hookimpls == [d, b, a, c]
        let mut r = Reg::new();
        r.plain("a");
        r.add("b", Tier::TRYLAST, false);
        r.plain("c");
        r.add("d", Tier::TRYLAST, false);
        assert_eq!(r.calls(), ["c", "a", "b", "d"]);
    }

    #[test]
    fn trylast_registered_last() {
        // pluggy test_adding_nonwrappers_trylast2: middle, b, m1(trylast) -> [m1, middle, b]
        let mut r = Reg::new();
        r.plain("middle");
        r.plain("b");
        r.add("m1", Tier::TRYLAST, false);
        assert_eq!(r.calls(), ["b", "middle", "m1"]);
    }

    #[test]
    fn tryfirst_runs_first_newest_first() {
        // pluggy test_adding_nonwrappers_tryfirst: m1(tryfirst), middle, b -> [middle, b, m1]
        let mut r = Reg::new();
        r.add("m1", Tier::TRYFIRST, false);
        r.plain("middle");
        r.plain("b");
        assert_eq!(r.calls(), ["m1", "b", "middle"]);
        let mut r = Reg::new();
        r.add("t1", Tier::TRYFIRST, false);
        r.add("t2", Tier::TRYFIRST, false);
        assert_eq!(r.calls(), ["t2", "t1"]);
    }

    fn names(v: &[ImplSpec]) -> Vec<String> {
        v.iter().map(|s| s.instance.clone()).collect()
    }

    #[test]
    fn wrappers_run_around_all_plain_impls() {
        // pluggy test_adding_wrappers_ordering: m1(hookwrapper), m1_fun(wrapper), middle,
        // m3_fun(hookwrapper), m3(hookwrapper) -> [middle, m1, m1_fun, m3_fun, m3]
        let mut r = Reg::new();
        r.add("m1", Tier::NORMAL, true);
        r.add("m1_fun", Tier::NORMAL, true);
        r.plain("middle");
        r.add("m3_fun", Tier::NORMAL, true);
        r.add("m3", Tier::NORMAL, true);
        let o = r.order().unwrap();
        assert_eq!(names(&o.wrappers), ["m3", "m3_fun", "m1_fun", "m1"]);
        assert_eq!(names(&o.impls), ["middle"]);
    }

    #[test]
    fn wrappers_honour_tryfirst() {
        // pluggy test_adding_wrappers_ordering_tryfirst: m1(hookwrapper, tryfirst),
        // m2(hookwrapper), m3(wrapper, tryfirst) -> [m2, m1, m3]
        let mut r = Reg::new();
        r.add("m1", Tier::TRYFIRST, true);
        r.add("m2", Tier::NORMAL, true);
        r.add("m3", Tier::TRYFIRST, true);
        assert_eq!(r.calls(), ["m3", "m1", "m2"]);
    }

    #[test]
    fn wrappers_and_plain_impls_complex() {
        // pluggy test_adding_wrappers_complex, final state:
        // [m9, m3, m2, m7, m13, m6, m10, m11, m1, m4, m8, m12, m5]
        let mut r = Reg::new();
        r.add("m1", Tier::TRYLAST, true);
        r.plain("m2");
        r.add("m3", Tier::TRYLAST, false);
        r.add("m4", Tier::NORMAL, true);
        r.add("m5", Tier::TRYFIRST, true);
        r.add("m6", Tier::TRYFIRST, false);
        r.plain("m7");
        r.add("m8", Tier::NORMAL, true);
        r.add("m9", Tier::TRYLAST, false);
        r.add("m10", Tier::TRYFIRST, false);
        r.add("m11", Tier::TRYLAST, true);
        r.add("m12", Tier::NORMAL, true);
        r.plain("m13");
        let o = r.order().unwrap();
        assert_eq!(names(&o.wrappers), ["m5", "m12", "m8", "m4", "m1", "m11"]);
        assert_eq!(
            names(&o.impls),
            ["m10", "m6", "m13", "m7", "m2", "m3", "m9"]
        );
    }

    #[test]
    fn call_extra_order_of_wrappers() {
        // pluggy test_call_extra_hook_order: wrappers 4(tryfirst), 5, 6(trylast) run their
        // "pre" parts 4, 5, 6 (the chain runner runs "post" parts in reverse).
        let mut r = Reg::new();
        r.add("1", Tier::TRYFIRST, false);
        r.plain("2");
        r.add("3", Tier::TRYLAST, false);
        r.add("4", Tier::TRYFIRST, true);
        r.add("5", Tier::NORMAL, true);
        r.add("6", Tier::TRYLAST, true);
        assert_eq!(r.calls(), ["4", "5", "6", "1", "2", "3"]);
    }

    #[test]
    fn higher_priority_runs_first_within_a_tier_only() {
        let mut r = Reg::new();
        r.plain("low").priority = -5;
        r.plain("high").priority = 10;
        r.plain("zero");
        r.add("first", Tier::TRYFIRST, false).priority = -100;
        r.add("last", Tier::TRYLAST, false).priority = 100;
        assert_eq!(r.calls(), ["first", "high", "zero", "low", "last"]);
    }

    #[test]
    fn before_and_after_override_tiers_and_priorities() {
        let mut r = Reg::new();
        r.add("a", Tier::TRYFIRST, false);
        r.plain("b");
        r.add("c", Tier::TRYLAST, false).before = vec!["a".into()];
        // a must wait for c; b keeps its place; a runs as soon as c has run.
        assert_eq!(r.calls(), ["b", "c", "a"]);
        let mut r = Reg::new();
        r.add("a", Tier::TRYFIRST, false).after = vec!["c".into()];
        r.plain("b");
        r.add("c", Tier::TRYLAST, false);
        assert_eq!(r.calls(), ["b", "c", "a"]);
    }

    #[test]
    fn constraints_move_only_what_they_must() {
        let mut r = Reg::new();
        r.plain("a");
        r.plain("b");
        r.plain("c");
        r.plain("d").after = vec!["b".into()];
        // base order d c b a; d must follow b
        assert_eq!(r.calls(), ["c", "b", "d", "a"]);
    }

    #[test]
    fn a_cycle_is_an_error_naming_hook_and_instances() {
        let mut r = Reg::new();
        r.plain("a").before = vec!["b".into()];
        r.plain("b").before = vec!["c".into()];
        r.plain("c").before = vec!["a".into()];
        let e = r.order().unwrap_err();
        assert!(
            e.starts_with("hook flaskbb_authenticate: before/after constraints form a cycle: "),
            "{e}"
        );
        for n in ["a", "b", "c"] {
            assert!(e.contains(n), "{e}");
        }
    }

    #[test]
    fn an_unknown_name_is_an_error() {
        let mut r = Reg::new();
        r.plain("a").after = vec!["ldap".into()];
        assert_eq!(
            r.order().unwrap_err(),
            "hook flaskbb_authenticate: instance \"a\" has after = [\"ldap\"], but no instance is named \"ldap\""
        );
    }

    #[test]
    fn a_known_instance_outside_the_chain_is_ignored() {
        let mut r = Reg::new();
        r.plain("a").before = vec!["elsewhere".into()];
        let mut known = r.known();
        known.insert("elsewhere".into());
        let o = order("h", r.specs.clone(), &known).unwrap();
        assert_eq!(o.impls.len(), 1);
    }
}
