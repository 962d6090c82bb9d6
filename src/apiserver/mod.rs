//! The Kubernetes API server's own validation of a Pod (work in progress): for now the
//! quantity parser, moved here from the injector.

pub mod quantity;
