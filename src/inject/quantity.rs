//! Kubernetes resource quantities for the injector: the parser lives with the API server's
//! rules in [`crate::apiserver::quantity`]; the worker count from a CPU amount stays here.

pub use crate::apiserver::quantity::{Amount, QuantityError};

/// The sidecar's worker count from its CPU limit (or request): whole cores, at least one.
pub fn workers_for_cpu(cpu: Amount) -> u32 {
    u32::try_from(cpu.whole_units()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_whole_cores_and_at_least_one() {
        let workers = |text| workers_for_cpu(Amount::parse(text).unwrap());
        assert_eq!(workers("500m"), 1);
        assert_eq!(workers("100m"), 1);
        assert_eq!(workers("1"), 1);
        assert_eq!(workers("2"), 2);
        assert_eq!(workers("2500m"), 2);
        assert_eq!(workers("1.5"), 1);
        assert_eq!(workers("4000m"), 4);
        assert_eq!(workers("0"), 1);
        assert_eq!(workers("1e12"), u32::MAX);
    }
}
