//! The hooks the daemon dispatches: plugin-abi's [`Hook`], generated from the hook
//! table in `flaskbbd-hooks` with each hook's FlaskBB name, `firstresult` and the
//! control-flow error its chain accepts ([`Accepts`]).

pub(crate) use plugin_abi::hooks::{Accepts, Hook};
