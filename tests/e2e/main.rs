//! End-to-end and adapter tests on the local cloud: Maestro's real functions and state
//! machines, wired by infra/template.yaml, on the emulator. One binary, so the emulator starts
//! once per run; each test empties it and builds what it needs.

mod adapters;
mod approval_workflow;
mod approvals;
mod async_paths;
mod cli;
mod discovery;
mod emulator;
mod event_sources;
mod iam;
mod insider;
mod inventory_races;
mod lambda_api;
mod openapi;
mod quota;
mod resources;
mod sample_events;
mod secret_rotation;
mod sso_fixture;
mod sso_monitor;
mod sso_sync;
mod template_wiring;
