//! The greenbatch operator: turns each `InferenceService` into a profiled model served at its
//! energy-optimal batch size.
//!
//! A reconcile is a pipeline whose ends alone touch the API:
//! read ([`controller`]) -> [`validate`] (pure) -> [`plan`] (pure, with `greenbatch_core::choose`)
//! -> [`apply`] (server-side apply, one field manager) -> status and Events.
//!
//! Modules, bottom-up (each imports only modules above it in this list):
//! [`names`], [`config`], [`validate`], [`resources`], [`load`], [`observe`], [`sizing`], [`plan`],
//! [`prune`], [`plot`] — pure;
//! [`apply`], [`metrics`], [`scrape`] — I/O helpers; [`pruner`] — deletes profiles no service
//! uses; [`controller`] — the kube-rs `Controller` (and the pruner beside it);
//! [`leader`] — Lease-based leader election around the controller;
//! [`server`] — `/metrics`, `/healthz`, `/readyz`.

pub mod apply;
pub mod config;
pub mod controller;
pub mod error;
pub mod leader;
pub mod load;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod plan;
pub mod plot;
pub mod prune;
pub mod pruner;
pub mod resources;
pub mod scrape;
pub mod server;
pub mod sizing;
pub mod validate;

#[cfg(test)]
mod testutil;

pub use config::OperatorConfig;
pub use controller::{Operator, Scope};
pub use error::OperatorError;
