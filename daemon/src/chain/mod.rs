//! Hook chains: each hook's impls in call order ([`order`]) and the one loop that
//! calls them (as pluggy's `_multicall`).
//!
//! A chain is built once per plugin generation and never changes. Calling it: the
//! wrappers' "before" parts in order, then the impls until one decides (a firstresult
//! answer, or an error that ends the chain), then the wrappers' "after" parts in
//! reverse, each of which sees the outcome and may replace it. A failure (error value,
//! panic, an error kind the hook does not accept) ends the chain and names the
//! instance; the caller fails the request closed.
//!
//! Consecutive impls whose instances share one plugin host (isolated instances of one
//! library with one sandbox) are run by that host in one round trip, with the same
//! rules (the host threads the draft and stops where this loop would); each impl's
//! outcome comes back for the metrics and the log.

pub(crate) mod order;

use std::{
    cell::Cell,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    time::Instant,
};

use plugin_abi::{
    abi::{self, HookCall, Tier},
    sdk::{HookError, HookResult, Outcome, Value},
};

use crate::{
    hook::{Accepts, Hook},
    instance::{CallCx, Instance},
    ipc::{Answer, Arg, ChainAnswer, Down, Step},
    isolation::{supervisor::RunError, Supervisor},
    metrics::{HookOutcome, HookStats},
    proto::{convert, ChainEntry, HookChain},
    request::Request,
};

/// One impl in a chain.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The instance whose impl this is.
    pub instance: Arc<Instance>,
    /// Its tier (tryfirst, normal, trylast).
    pub tier: Tier,
    /// Its priority within the tier.
    pub priority: i32,
    /// The metrics its calls add to.
    pub stats: HookStats,
}

impl Entry {
    /// `instance`'s impl of `hook`, where `tier` and `priority` put it.
    pub(crate) fn new(instance: Arc<Instance>, hook: Hook, tier: Tier, priority: i32) -> Entry {
        let stats = crate::metrics::global().hook_stats(&instance.name, hook);
        Entry {
            instance,
            tier,
            priority,
            stats,
        }
    }
}

/// One hook's chain.
#[derive(Clone)]
pub(crate) struct Chain {
    /// The hook this chain runs.
    pub hook: Hook,
    /// Its wrappers, in the order their "before" parts run.
    pub wrappers: Vec<Entry>,
    /// Its impls, in call order.
    pub impls: Vec<Entry>,
}

// The generators below handle an argument by its mode (a view's `args`,
// `flaskbbd-hooks`) and ask the daemon's kind table (`ipc::base_kind!`) for its base
// kind's type and conversions.

/// An `Input` field's type: a reference to what the caller holds, except the draft a
/// save_before chain starts from, which it owns, and a flag.
macro_rules! input_arg {
    ($l:lifetime, draft $base:ident) => { crate::ipc::base_kind!(ty, $base) };
    ($l:lifetime, copied $base:ident) => { crate::ipc::base_kind!(ty, $base) };
    ($l:lifetime, $mode:ident $base:ident) => { &$l crate::ipc::base_kind!(ty, $base) };
}

/// One argument handed to an impl: the caller's, or for a draft the chain's current
/// value (what the impl before returned).
macro_rules! impl_arg {
    (draft $base:ident, $arg:ident, $value:ident) => {{
        let _ = $arg;
        match crate::ipc::base_kind!(from_value, $base, $value) {
            Some(current) => current,
            None => return Ok(None),
        }
    }};
    ($mode:ident $base:ident, $arg:ident, $value:ident) => {
        *$arg
    };
}

/// The value a chain starts from, when the argument is its draft.
macro_rules! draft_value {
    (draft $base:ident, $arg:ident) => {
        Some(crate::ipc::base_kind!(value, $base)($arg.clone()))
    };
    ($mode:ident $base:ident, $arg:ident) => {{
        let _ = $arg;
        None
    }};
}

/// One argument as it crosses to a plugin host for a run of impls (a draft as the
/// chain holds it now); `None` from the function when the chain's value is not a draft.
macro_rules! run_arg {
    (draft $base:ident, $arg:ident, $value:ident, $args:ident, $draft:ident) => {{
        let _ = $arg;
        let current = crate::ipc::base_kind!(from_value, $base, $value)?;
        $draft = u32::try_from($args.len()).ok();
        $args.push(crate::ipc::base_kind!(to_wire, $base, current));
    }};
    ($mode:ident $base:ident, $arg:ident, $value:ident, $args:ident, $draft:ident) => {
        $args.push(crate::ipc::base_kind!(to_wire, $base, $arg))
    };
}

/// One argument as a wrapper sees it in the call's JSON; never the secret.
macro_rules! arg_json {
    ($map:ident, secret $base:ident, $arg:ident) => {
        let _ = $arg;
    };
    ($map:ident, $mode:ident $base:ident, $arg:ident) => {
        $map.insert(
            stringify!($arg).into(),
            crate::ipc::base_kind!(json, $base, $arg),
        );
    };
}

macro_rules! declare_inputs {
    ($(
        $hook:ident {
            method: $method:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            doc: $doc:literal,
        }
    )*) => {
        /// A hook's arguments (one variant per hook of the hook table).
        pub(crate) enum Input<'a> {
            $(
                #[doc = $doc]
                $hook { $($arg: input_arg!('a, $mode $base)),* },
            )*
        }

        impl Input<'_> {
            /// The hook these are the arguments of.
            pub(crate) fn hook(&self) -> Hook {
                match self {
                    $(Input::$hook { .. } => Hook::$hook,)*
                }
            }

            /// The arguments as JSON for wrappers: never the secret.
            fn args_json(&self) -> String {
                let mut map = serde_json::Map::new();
                match self {
                    $(Input::$hook { $($arg),* } => { $(arg_json!(map, $mode $base, $arg);)* })*
                }
                serde_json::Value::Object(map).to_string()
            }

            /// The value a chain starts from: save_before hooks thread their draft
            /// through.
            fn initial_value(&self) -> Value {
                match self {
                    $(Input::$hook { $($arg),* } => {
                        None$(.or(draft_value!($mode $base, $arg)))*.unwrap_or(Value::Nothing)
                    })*
                }
            }
        }

        /// The arguments as they cross to a plugin host for a run of impls, the draft
        /// (if the hook has one) being `value`, and which argument the draft is; `None`
        /// when `value` is not the draft's kind.
        fn run_args(input: &Input<'_>, value: &Value) -> Option<(Vec<Arg>, Option<u32>)> {
            #[allow(unused_mut)]
            let mut args = Vec::new();
            #[allow(unused_mut)]
            let mut draft = None;
            match input {
                $(Input::$hook { $($arg),* } => {
                    $(run_arg!($mode $base, $arg, value, args, draft);)*
                })*
            }
            Some((args, draft))
        }

        /// Calls the impl's method for this hook; `Some` is a value for the chain.
        fn dispatch(
            h: &dyn crate::instance::Hooks,
            cx: &CallCx<'_>,
            input: &Input<'_>,
            value: &Value,
        ) -> HookResult<Option<Value>> {
            Ok(match input {
                $(Input::$hook { $($arg),* } => {
                    ChainValue::into_value(h.$method(cx, $(impl_arg!($mode $base, $arg, value)),*)?)
                })*
            })
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [method, args, doc],
    then: declare_inputs,
}

/// What an impl's answer contributes to its chain.
trait ChainValue {
    fn into_value(self) -> Option<Value>;
}

impl ChainValue for () {
    fn into_value(self) -> Option<Value> {
        None
    }
}

impl ChainValue for Option<abi::User> {
    fn into_value(self) -> Option<Value> {
        self.map(Value::User)
    }
}

impl ChainValue for bool {
    fn into_value(self) -> Option<Value> {
        self.then_some(Value::True)
    }
}

impl ChainValue for abi::Post {
    fn into_value(self) -> Option<Value> {
        Some(Value::Post(self))
    }
}

impl ChainValue for abi::Topic {
    fn into_value(self) -> Option<Value> {
        Some(Value::Topic(self))
    }
}

/// What a chain call produced and who decided it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChainOutcome {
    /// The hook whose chain this is the outcome of.
    pub hook: Hook,
    /// The chain's value, or the error that ended it.
    pub result: Result<Value, HookError>,
    /// The instance whose answer or error decided the outcome, if one did.
    pub decided_by: Option<Arc<str>>,
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    match plugin_abi::sdk::panic_payload(&*p) {
        Some(s) => format!("panicked: {s}"),
        None => "panicked".into(),
    }
}

impl Chain {
    /// Calls the chain for one request; `input` must be this chain's hook's (use
    /// `Generation::call`, which picks the chain from the input).
    pub(crate) fn call(&self, req: &Request, input: Input<'_>) -> ChainOutcome {
        debug_assert_eq!(input.hook(), self.hook, "arguments of another hook");
        let started = Instant::now();
        // One clock read per call: each call's end is the next one's start.
        let lap = Cell::new(started);
        if self.wrappers.is_empty() {
            return self.call_impls(req, input, &lap);
        }
        let call = HookCall {
            hook: self.hook.name().into(),
            args_json: input.args_json().into(),
        };
        let mut entered = 0;
        let mut outcome = None;
        for w in &self.wrappers {
            let r = self.run_one(req, w, &lap, |cx| w.instance.hooks.wrap_before(cx, &call));
            match r {
                Ok(()) | Err(HookError::NotImplemented) => entered += 1,
                Err(e) => {
                    outcome = Some(ChainOutcome {
                        hook: self.hook,
                        result: Err(as_failure(self.hook, e)),
                        decided_by: Some(w.instance.name.clone()),
                    });
                    break;
                }
            }
        }
        let mut outcome = match outcome {
            Some(o) => o,
            None => self.call_impls(req, input, &lap),
        };
        for w in self.wrappers[..entered].iter().rev() {
            if req.is_abandoned() {
                break;
            }
            let seen = Outcome {
                result: outcome.result.clone(),
                decided_by: outcome.decided_by.as_deref().map(str::to_owned),
                duration: started.elapsed(),
            };
            let instance = &w.instance;
            req.enter(&instance.name, self.hook);
            let cx = CallCx {
                req,
                instance,
                hook: self.hook,
            };
            let after_started = lap.get();
            let after = catch_unwind(AssertUnwindSafe(|| {
                instance.hooks.wrap_after(&cx, &call, seen)
            }));
            req.leave();
            let after_outcome = match &after {
                Ok(o) => hook_outcome(&o.result),
                Err(_) => HookOutcome::Failed,
            };
            let now = Instant::now();
            lap.set(now);
            w.stats.record(after_outcome, now - after_started);
            outcome = match after {
                Ok(o) => ChainOutcome {
                    hook: self.hook,
                    decided_by: o.decided_by.map(Arc::from),
                    result: o.result.map_err(|e| as_failure(self.hook, e)),
                },
                Err(p) => ChainOutcome {
                    hook: self.hook,
                    result: Err(HookError::failed(panic_text(p))),
                    decided_by: Some(instance.name.clone()),
                },
            };
        }
        outcome
    }

    /// Runs one impl with the request's current-call slot set, containing a panic on
    /// the daemon's side (a plugin's own panics are caught inside the plugin); counts
    /// it in its entry's metrics, timed from `lap` (the previous call's end), which it
    /// moves to its own end.
    fn run_one<T>(
        &self,
        req: &Request,
        entry: &Entry,
        lap: &Cell<Instant>,
        f: impl FnOnce(&CallCx<'_>) -> HookResult<T>,
    ) -> HookResult<T> {
        let instance = &entry.instance;
        if req.is_abandoned() {
            return Err(HookError::failed("the request had already timed out"));
        }
        req.enter(&instance.name, self.hook);
        let cx = CallCx {
            req,
            instance,
            hook: self.hook,
        };
        let started = lap.get();
        let r = catch_unwind(AssertUnwindSafe(|| f(&cx)))
            .unwrap_or_else(|p| Err(HookError::failed(panic_text(p))));
        req.leave();
        let now = Instant::now();
        lap.set(now);
        let took = now - started;
        // The request timed out while this call ran: whatever it answered late was
        // not used, and the call counts as failed.
        let outcome = if req.is_abandoned() {
            HookOutcome::Failed
        } else {
            hook_outcome(&r)
        };
        entry.stats.record(outcome, took);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let outcome = match &r {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::debug!(
                instance = &*instance.name,
                hook = self.hook.name(),
                outcome,
                duration_us = took.as_micros() as u64,
                "hook call"
            );
        }
        r
    }

    fn call_impls(&self, req: &Request, input: Input<'_>, lap: &Cell<Instant>) -> ChainOutcome {
        let mut value = input.initial_value();
        let mut at = 0;
        while let Some(e) = self.impls.get(at) {
            let run = self.host_run(at);
            if let (true, Some(iso)) = (run.len() > 1, e.instance.hooks.isolated()) {
                at += run.len();
                if let Some(ended) = self.call_run(req, run, &iso.host, &input, &mut value, lap) {
                    return ended;
                }
                continue;
            }
            at += 1;
            let r = self.run_one(req, e, lap, |cx| {
                dispatch(&*e.instance.hooks, cx, &input, &value)
            });
            match r {
                Ok(Some(v)) if self.hook.firstresult() => {
                    return ChainOutcome {
                        hook: self.hook,
                        result: Ok(v),
                        decided_by: Some(e.instance.name.clone()),
                    };
                }
                Ok(Some(v)) => value = v,
                Ok(None) | Err(HookError::NotImplemented) => {}
                Err(err) => {
                    return ChainOutcome {
                        hook: self.hook,
                        result: Err(as_failure(self.hook, err)),
                        decided_by: Some(e.instance.name.clone()),
                    };
                }
            }
        }
        ChainOutcome {
            hook: self.hook,
            result: Ok(value),
            decided_by: None,
        }
    }

    /// The impls from `at` on whose instances share one plugin host with the one at
    /// `at` (just that one when it is not isolated or its neighbour is another host's).
    fn host_run(&self, at: usize) -> &[Entry] {
        let host = |e: &Entry| e.instance.hooks.isolated().map(|i| Arc::as_ptr(&i.host));
        let Some(first) = self.impls.get(at).and_then(host) else {
            return &self.impls[at..(at + 1).min(self.impls.len())];
        };
        let len = self.impls[at..]
            .iter()
            .take_while(|e| host(e) == Some(first))
            .count();
        &self.impls[at..at + len]
    }

    /// Runs `run` (consecutive impls of `host`'s instances) in one round trip to the
    /// host, from the chain's `value`, which it moves on; `Some` when the run ended the
    /// chain (an answer of a firstresult hook, or an error). Each impl is counted in
    /// its metrics with the time the host measured; the first also carries the
    /// crossing.
    fn call_run(
        &self,
        req: &Request,
        run: &[Entry],
        host: &Arc<Supervisor>,
        input: &Input<'_>,
        value: &mut Value,
        lap: &Cell<Instant>,
    ) -> Option<ChainOutcome> {
        if let Some(ended) = self.timed_out_before(req, &run[0]) {
            return Some(ended);
        }
        // Not a draft of its kind: no impl sees it (as in `dispatch`).
        let down = self.run_call(req, run, input, value)?;
        let (r, crossing) = self.cross(req, run, host, &down, lap);
        self.end_run(req, run, r, crossing, value)
    }

    /// The chain's end when the request timed out before the impl `next` (or a run
    /// beginning with it) could be called.
    fn timed_out_before(&self, req: &Request, next: &Entry) -> Option<ChainOutcome> {
        req.is_abandoned()
            .then(|| self.failed_by(HookError::failed("the request had already timed out"), next))
    }

    /// The chain's failure `e`, decided by the impl `by`.
    fn failed_by(&self, e: HookError, by: &Entry) -> ChainOutcome {
        ChainOutcome {
            hook: self.hook,
            result: Err(as_failure(self.hook, e)),
            decided_by: Some(by.instance.name.clone()),
        }
    }

    /// Takes the host's answer `r` to `run` (the round trip took `crossing`): counts
    /// each impl, moves the chain's `value` on, and says whether the run ended the
    /// chain (as [`Chain::call_run`]).
    fn end_run(
        &self,
        req: &Request,
        run: &[Entry],
        r: Result<ChainAnswer, RunError>,
        crossing: std::time::Duration,
        value: &mut Value,
    ) -> Option<ChainOutcome> {
        let first = &run[0];
        let abandoned = req.is_abandoned();
        let ChainAnswer {
            steps,
            value: answered,
        } = match r {
            Ok(answer) => answer,
            Err(RunError { error, step }) => {
                // The impl the host was in when it died, hung or broke the lane (as it
                // said on the lane's page): its call failed. The impls before it ran,
                // but their answers never came, and those after it never ran: neither
                // counts a call.
                let by = run.get(step).unwrap_or(first);
                by.stats.record(HookOutcome::Failed, crossing);
                return Some(self.failed_by(error, by));
            }
        };
        let ran = steps.len();
        let times = step_times(crossing, steps.iter().map(|s| s.ns));
        let (ended, moved) = self.count_steps(run, steps, times, abandoned);
        if ended.is_none() && ran < run.len() {
            // Nothing ended the run, yet not every impl ran: the host broke the rules.
            return Some(self.failed_by(
                HookError::failed(format!(
                    "its plugin host answered {ran} of a run of {} impls",
                    run.len()
                )),
                first,
            ));
        }
        if moved {
            match self.announced(answered) {
                Ok(v) => *value = v,
                Err(e) => return Some(self.failed_by(e, first)),
            }
        }
        match ended {
            Some(RunEnd::Decided(e)) => Some(ChainOutcome {
                hook: self.hook,
                result: Ok(value.clone()),
                decided_by: Some(e.instance.name.clone()),
            }),
            Some(RunEnd::Failed(err, e)) => Some(self.failed_by(err, e)),
            None => None,
        }
    }

    /// Whether the chain only crosses to plugin hosts: no wrapper, and every impl an
    /// isolated instance's. Such a chain can run on an async task that waits for each
    /// host's answer without holding its thread ([`Chain::call_crossing`]).
    pub(crate) fn crosses_only(&self) -> bool {
        self.wrappers.is_empty()
            && self
                .impls
                .iter()
                .all(|e| e.instance.hooks.isolated().is_some())
    }

    /// Calls a chain that [`Chain::crosses_only`] for one request, as [`Chain::call`]
    /// does, each run of one host's impls in one round trip that the task awaits.
    pub(crate) async fn call_crossing(&self, req: &Request, input: Input<'_>) -> ChainOutcome {
        debug_assert_eq!(input.hook(), self.hook, "arguments of another hook");
        debug_assert!(self.crosses_only(), "a chain that does not only cross");
        let mut value = input.initial_value();
        let mut lap = Instant::now();
        let mut at = 0;
        while at < self.impls.len() {
            let run = self.host_run(at);
            at += run.len();
            let Some(iso) = run[0].instance.hooks.isolated() else {
                return self.failed_by(HookError::failed("not an isolated instance"), &run[0]);
            };
            if let Some(ended) = self.timed_out_before(req, &run[0]) {
                return ended;
            }
            // Not a draft of its kind: no impl sees it (as in `dispatch`).
            let Some(down) = self.run_call(req, run, &input, &value) else {
                continue;
            };
            let instances: Vec<&Instance> = run.iter().map(|e| &*e.instance).collect();
            req.enter(&run[0].instance.name, self.hook);
            let r = iso
                .host
                .call_chain_async(req, self.hook, &instances, &down)
                .await;
            req.leave();
            let now = Instant::now();
            let crossing = now - lap;
            lap = now;
            if let Some(ended) = self.end_run(req, run, r, crossing, &mut value) {
                return ended;
            }
        }
        ChainOutcome {
            hook: self.hook,
            result: Ok(value),
            decided_by: None,
        }
    }

    /// The chain's value as a plugin host `answered` it after a run whose impls moved
    /// it on: of the hook's own kind, or the run fails (a value of another kind would
    /// make every later impl skip the draft, and the save go through unfiltered).
    fn announced(&self, answered: Option<Answer>) -> Result<Value, HookError> {
        answered
            .and_then(|a| chain_value(self.hook, a))
            .ok_or_else(|| {
                HookError::failed(format!(
                    "its plugin host answered a run of impls without the value it announced (a {})",
                    returns_name(self.hook)
                ))
            })
    }

    /// The message that asks a plugin host to run `run` from the chain's `value`;
    /// `None` when `value` is no draft of the kind the hook filters.
    fn run_call(
        &self,
        req: &Request,
        run: &[Entry],
        input: &Input<'_>,
        value: &Value,
    ) -> Option<Down> {
        let (args, draft) = run_args(input, value)?;
        let of = run
            .iter()
            .filter_map(|e| e.instance.hooks.isolated().map(|i| i.of))
            .collect();
        Some(Down::Chain {
            of,
            hook: self.hook.name().into(),
            args,
            draft,
            firstresult: self.hook.firstresult(),
            context: req.context.clone(),
        })
    }

    /// Sends `down` to `host` and waits for its answer (a panic on the way is the
    /// first impl's failure), with the request in the run's first instance meanwhile;
    /// moves `lap` on to now, and says how long the crossing took.
    fn cross(
        &self,
        req: &Request,
        run: &[Entry],
        host: &Arc<Supervisor>,
        down: &Down,
        lap: &Cell<Instant>,
    ) -> (Result<ChainAnswer, RunError>, std::time::Duration) {
        let first = &run[0];
        let instances: Vec<&Instance> = run.iter().map(|e| &*e.instance).collect();
        req.enter(&first.instance.name, self.hook);
        let started = lap.get();
        let r = catch_unwind(AssertUnwindSafe(|| {
            host.call_chain(req, self.hook, &instances, down)
        }))
        .unwrap_or_else(|p| {
            Err(RunError {
                error: HookError::failed(panic_text(p)),
                step: 0,
            })
        });
        req.leave();
        let now = Instant::now();
        lap.set(now);
        (r, now - started)
    }

    /// Counts each impl of `run` that the host ran (`steps`, which took `times`) in
    /// its metrics (as failed when the request was `abandoned` meanwhile) and the
    /// debug log, up to the one that ended the run, if any: how it ended it, and
    /// whether any moved the chain's value on.
    fn count_steps<'r>(
        &self,
        run: &'r [Entry],
        steps: Vec<Step>,
        times: Vec<std::time::Duration>,
        abandoned: bool,
    ) -> (Option<RunEnd<'r>>, bool) {
        let mut ended = None;
        let mut moved = false;
        for ((e, step), took) in run.iter().zip(steps).zip(times) {
            let r = step.result.map_err(HookError::from);
            e.stats.record(
                if abandoned {
                    HookOutcome::Failed
                } else {
                    hook_outcome(&r)
                },
                took,
            );
            if tracing::enabled!(tracing::Level::DEBUG) {
                let outcome = match &r {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::debug!(
                    instance = &*e.instance.name,
                    hook = self.hook.name(),
                    outcome,
                    duration_us = took.as_micros() as u64,
                    "hook call (one round trip for {} of one plugin host)",
                    match run.len() {
                        1 => "its one impl".to_owned(),
                        n => format!("{n} impls"),
                    }
                );
            }
            match r {
                Ok(true) if self.hook.firstresult() => {
                    ended = Some(RunEnd::Decided(e));
                    moved = true;
                }
                Ok(true) => moved = true,
                Ok(false) | Err(HookError::NotImplemented) => {}
                Err(err) => ended = Some(RunEnd::Failed(err, e)),
            }
            if ended.is_some() {
                break;
            }
        }
        (ended, moved)
    }

    /// The chain as `flaskbbd hooks` shows it.
    pub(crate) fn describe(&self) -> HookChain {
        let entry = |e: &Entry, wrapper| ChainEntry {
            instance: e.instance.name.to_string(),
            tier: e.tier.name().into(),
            priority: e.priority,
            wrapper,
            origin: e.instance.origin.describe(),
        };
        HookChain {
            hook: self.hook.name().into(),
            impls: self
                .wrappers
                .iter()
                .map(|e| entry(e, true))
                .chain(self.impls.iter().map(|e| entry(e, false)))
                .collect(),
        }
    }
}

/// How an impl of a run a plugin host ran ended the chain.
enum RunEnd<'r> {
    /// Its answer to a firstresult hook decided it.
    Decided(&'r Entry),
    /// It failed, with this error.
    Failed(HookError, &'r Entry),
}

/// A plugin host's answer as the chain's value, when it is one of the kind `hook`
/// returns (a host may answer anything; a single call is checked the same way).
fn chain_value(hook: Hook, a: Answer) -> Option<Value> {
    use plugin_abi::hooks::Returns;
    match (hook.returns(), a) {
        (Returns::User, Answer::User(Some(u))) => Some(Value::User(u.to_abi())),
        (Returns::True, Answer::True(true)) => Some(Value::True),
        (Returns::Post, Answer::Post(p)) => Some(Value::Post(convert::post_to_abi(&p))),
        (Returns::Topic, Answer::Topic(t)) => Some(Value::Topic(convert::topic_to_abi(&t))),
        _ => None,
    }
}

/// What `hook` returns, for an error message.
fn returns_name(hook: Hook) -> &'static str {
    use plugin_abi::hooks::Returns;
    match hook.returns() {
        Returns::Nothing => "nothing",
        Returns::User => "user",
        Returns::True => "true",
        Returns::Post => "post",
        Returns::Topic => "topic",
    }
}

/// How a hook call that ended in `r` counts in the metrics.
fn hook_outcome<T>(r: &Result<T, HookError>) -> HookOutcome {
    match r {
        Ok(_) => HookOutcome::Ok,
        Err(HookError::NotImplemented) => HookOutcome::NotImplemented,
        Err(HookError::Failed { .. }) => HookOutcome::Failed,
        Err(
            HookError::StopAuthentication { .. }
            | HookError::ForceLogout { .. }
            | HookError::Rejected { .. },
        ) => HookOutcome::Refused,
    }
}

/// Keeps the control-flow errors this hook accepts; any other one fails closed.
fn as_failure(hook: Hook, e: HookError) -> HookError {
    let accepted = matches!(
        (&e, hook.accepts()),
        (HookError::StopAuthentication { .. }, Accepts::Stop)
            | (HookError::ForceLogout { .. }, Accepts::ForceLogout)
            | (HookError::Rejected { .. }, Accepts::Rejected)
            | (HookError::Failed { .. }, _)
    );
    if accepted {
        e
    } else {
        HookError::failed(format!("returned {e}, which {hook} does not accept"))
    }
}

/// Each impl's time in a run that took `total` in all (as the daemon measured it), from
/// the times the host reported (`reported`, nanoseconds, in call order). The host is
/// not trusted to tell the truth: no impl is given more than what is left of `total`
/// after the impls before it, so that the times add up to `total` at most whatever the
/// host says; the crossing (what the host did not account for) is the first impl's.
fn step_times(
    total: std::time::Duration,
    reported: impl Iterator<Item = u64>,
) -> Vec<std::time::Duration> {
    let mut left = total;
    let mut times: Vec<std::time::Duration> = reported
        .map(|ns| {
            let took = std::time::Duration::from_nanos(ns).min(left);
            left -= took;
            took
        })
        .collect();
    if let Some(first) = times.first_mut() {
        *first += left;
    }
    times
}

#[cfg(test)]
mod tests {
    //! The call loop with native test instances (no plugin libraries): wrappers,
    //! firstresult, the control-flow errors, drafts handed on, panics, and errors a
    //! hook does not accept.

    use std::sync::Mutex;

    use super::*;
    use crate::{instance::Hooks, instance::Origin, testing::Setup};

    #[test]
    fn a_hosts_step_times_are_bounded_by_the_measured_round_trip() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        // Honest: each impl its own time, the crossing on the first.
        assert_eq!(
            step_times(ms(10), [2_000_000, 3_000_000].into_iter()),
            [ms(7), ms(3)]
        );
        // A host that claims more than the round trip took gets no more than it.
        let lied = step_times(ms(10), [u64::MAX, 5_000_000, u64::MAX].into_iter());
        assert_eq!(lied, [ms(10), ms(0), ms(0)]);
        assert_eq!(lied.iter().sum::<Duration>(), ms(10));
        let lied = step_times(ms(10), [1_000_000, u64::MAX].into_iter());
        assert_eq!(lied, [ms(1), ms(9)]);
        assert!(step_times(ms(1), std::iter::empty()).is_empty());
    }

    /// A shared host's answer to a run is taken only when it is of the hook's own
    /// kind: a topic (or a user, or `true`) answered for a post would make every later
    /// filter skip the post, and the save go through unfiltered.
    #[test]
    fn a_runs_answer_of_another_kind_is_no_value() {
        let post = || Answer::Post(crate::proto::Post::default());
        let topic = || Answer::Topic(crate::proto::Topic::default());
        assert!(matches!(
            chain_value(Hook::PostSaveBefore, post()),
            Some(Value::Post(_))
        ));
        for wrong in [
            topic(),
            Answer::True(true),
            Answer::User(None),
            Answer::Nothing,
        ] {
            assert!(chain_value(Hook::PostSaveBefore, wrong).is_none());
        }
        assert!(chain_value(Hook::ReauthAttempt, post()).is_none());
        assert!(matches!(
            chain_value(Hook::ReauthAttempt, Answer::True(true)),
            Some(Value::True)
        ));
    }

    /// What a test instance does when called.
    #[derive(Clone, Copy)]
    enum Act {
        /// Answers nothing (or `false`).
        Pass,
        /// Answers (`true`), or as a wrapper replaces the outcome with `true`.
        Answer,
        Stop(&'static str),
        Reject(&'static str),
        Append(&'static str),
        Panic,
    }

    struct Fake {
        name: &'static str,
        act: Act,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn note(&self, what: &str) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{}:{what}", self.name));
        }
        fn outcome<T>(&self, answer: T, nothing: T) -> HookResult<T> {
            match self.act {
                Act::Pass | Act::Append(_) => Ok(nothing),
                Act::Answer => Ok(answer),
                Act::Stop(r) => Err(HookError::stop(r)),
                Act::Reject(r) => Err(HookError::rejected(r)),
                Act::Panic => panic!("{} panics", self.name),
            }
        }
    }

    impl Hooks for Fake {
        fn reauth_attempt(&self, _: &CallCx<'_>, _: &abi::User, _: &str) -> HookResult<bool> {
            self.note("call");
            self.outcome(true, false)
        }
        fn post_reauth(&self, _: &CallCx<'_>, _: &abi::User) -> HookResult<()> {
            self.note("call");
            self.outcome((), ())
        }
        fn authentication_failed(&self, _: &CallCx<'_>, _: &str) -> HookResult<()> {
            self.note("call");
            self.outcome((), ())
        }
        fn user_registered(&self, _: &CallCx<'_>, _: &str) -> HookResult<()> {
            self.note("call");
            self.outcome((), ())
        }
        fn post_save_before(&self, _: &CallCx<'_>, post: &abi::Post) -> HookResult<abi::Post> {
            self.note("call");
            let mut post = post.clone();
            if let Act::Append(text) = self.act {
                post.content.push_str(text);
            }
            self.outcome(post.clone(), post)
        }
        fn wrap_before(&self, _: &CallCx<'_>, _: &HookCall) -> HookResult<()> {
            self.note("before");
            Ok(())
        }
        fn wrap_after(&self, _: &CallCx<'_>, _: &HookCall, outcome: Outcome) -> Outcome {
            self.note("after");
            match self.act {
                Act::Answer => Outcome {
                    result: Ok(Value::True),
                    decided_by: Some(self.name.into()),
                    duration: outcome.duration,
                },
                _ => outcome,
            }
        }
    }

    /// A chain of `hook` from `(name, act, wrapper)` in call order, and its log.
    fn chain(hook: Hook, impls: &[(&'static str, Act, bool)]) -> (Chain, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (mut wrappers, mut plain) = (Vec::new(), Vec::new());
        for &(name, act, wrapper) in impls {
            let instance = Arc::new(Instance {
                name: name.into(),
                origin: Origin::Builtin,
                config_json: "{}".into(),
                hooks: Box::new(Fake {
                    name,
                    act,
                    log: log.clone(),
                }),
            });
            let entry = Entry::new(instance, hook, Tier::NORMAL, 0);
            if wrapper {
                wrappers.push(entry);
            } else {
                plain.push(entry);
            }
        }
        (
            Chain {
                hook,
                wrappers,
                impls: plain,
            },
            log,
        )
    }

    fn user() -> abi::User {
        plugin_abi::testing::TestHost::user(1, "ann")
    }

    fn logged(log: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        log.lock().unwrap().clone()
    }

    #[test]
    fn wrappers_run_around_the_impls_and_tear_down_in_reverse() {
        let s = Setup::new("chain-wrappers", "");
        let (c, log) = chain(
            Hook::UserRegistered,
            &[
                ("w1", Act::Pass, true),
                ("w2", Act::Pass, true),
                ("a", Act::Pass, false),
            ],
        );
        let o = c.call(&s.request(), Input::UserRegistered { username: "u" });
        assert_eq!(o.result, Ok(Value::Nothing));
        assert_eq!(
            logged(&log),
            ["w1:before", "w2:before", "a:call", "w2:after", "w1:after"]
        );
    }

    #[test]
    fn a_wrapper_may_replace_the_outcome_and_then_decides_it() {
        let s = Setup::new("chain-replace", "");
        let (c, _) = chain(
            Hook::ReauthAttempt,
            &[("w", Act::Answer, true), ("deny", Act::Stop("no"), false)],
        );
        let u = user();
        let o = c.call(
            &s.request(),
            Input::ReauthAttempt {
                user: &u,
                secret: "s",
            },
        );
        assert_eq!(
            (o.result, o.decided_by.as_deref()),
            (Ok(Value::True), Some("w"))
        );
    }

    #[test]
    fn firstresult_stops_at_the_first_answer() {
        let s = Setup::new("chain-first", "");
        let (c, log) = chain(
            Hook::ReauthAttempt,
            &[
                ("no", Act::Pass, false),
                ("yes", Act::Answer, false),
                ("late", Act::Answer, false),
            ],
        );
        let u = user();
        let o = c.call(
            &s.request(),
            Input::ReauthAttempt {
                user: &u,
                secret: "s",
            },
        );
        assert_eq!(
            (o.result, o.decided_by.as_deref()),
            (Ok(Value::True), Some("yes"))
        );
        assert_eq!(logged(&log), ["no:call", "yes:call"]);
    }

    #[test]
    fn an_accepted_stop_ends_the_chain_naming_who_stopped() {
        let s = Setup::new("chain-stop", "");
        let (c, log) = chain(
            Hook::PostReauth,
            &[
                ("a", Act::Pass, false),
                ("b", Act::Stop("second factor"), false),
                ("c", Act::Pass, false),
            ],
        );
        let u = user();
        let o = c.call(&s.request(), Input::PostReauth { user: &u });
        assert_eq!(o.result, Err(HookError::stop("second factor")));
        assert_eq!(o.decided_by.as_deref(), Some("b"));
        assert_eq!(logged(&log), ["a:call", "b:call"]);
    }

    #[test]
    fn every_impl_of_a_save_before_gets_the_draft_the_one_before_returned() {
        let s = Setup::new("chain-draft", "");
        let (c, _) = chain(
            Hook::PostSaveBefore,
            &[
                ("one", Act::Append(" [one]"), false),
                ("two", Act::Append(" [two]"), false),
            ],
        );
        let post = abi::Post {
            content: "hello".into(),
            ..Default::default()
        };
        let o = c.call(&s.request(), Input::PostSaveBefore { post });
        match o.result {
            Ok(Value::Post(p)) => assert_eq!(p.content.as_str(), "hello [one] [two]"),
            other => panic!("expected the post, got {other:?}"),
        }
    }

    #[test]
    fn a_panic_becomes_a_failure_naming_the_instance() {
        let s = Setup::new("chain-panic", "");
        let (c, log) = chain(
            Hook::UserRegistered,
            &[("boom", Act::Panic, false), ("after", Act::Pass, false)],
        );
        let o = c.call(&s.request(), Input::UserRegistered { username: "u" });
        assert_eq!(o.result, Err(HookError::failed("panicked: boom panics")));
        assert_eq!(o.decided_by.as_deref(), Some("boom"));
        assert_eq!(logged(&log), ["boom:call"]);
    }

    #[test]
    fn an_error_the_hook_does_not_accept_fails_closed() {
        let s = Setup::new("chain-odd", "");
        let (c, _) = chain(
            Hook::AuthenticationFailed,
            &[("odd", Act::Reject("r"), false)],
        );
        let o = c.call(
            &s.request(),
            Input::AuthenticationFailed { identifier: "x" },
        );
        assert_eq!(
            o.result,
            Err(HookError::failed(
                "returned Rejected: r, which flaskbb_authentication_failed does not accept"
            ))
        );
    }

    #[test]
    fn the_arguments_wrappers_see_never_hold_the_secret() {
        let input = Input::Authenticate {
            identifier: "ann",
            secret: "hunter2",
        };
        assert_eq!(input.args_json(), r#"{"identifier":"ann"}"#);
        let u = user();
        let input = Input::ReauthAttempt {
            user: &u,
            secret: "hunter2",
        };
        assert_eq!(input.args_json(), r#"{"user":{"id":1,"username":"ann"}}"#);
    }
}
