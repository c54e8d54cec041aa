//! The order an experiment's steps run in, for the engine and for validation alike.

use crate::spec::Workflow;
use std::collections::HashMap;

/// The order steps run in: each next step is the first as written whose needs have all run
/// (dependencies first, otherwise as written). `Err` holds one cycle of ids, first id repeated
/// last (`a → b → a`). Needs that name no step are ignored here (validation reports them).
pub fn step_order(ids: &[String], needs: &[Vec<String>]) -> Result<Vec<usize>, Vec<String>> {
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let needed = |i: usize| {
        needs[i]
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
    };
    let mut done = vec![false; ids.len()];
    let mut order = Vec::with_capacity(ids.len());
    while order.len() < ids.len() {
        match (0..ids.len()).find(|&i| !done[i] && needed(i).all(|j| done[j])) {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => return Err(a_cycle(ids, &done, &needed)),
        }
    }
    Ok(order)
}

/// Walks needs from a step left over until one repeats: that is a cycle.
fn a_cycle<I: Iterator<Item = usize>>(
    ids: &[String],
    done: &[bool],
    needed: &dyn Fn(usize) -> I,
) -> Vec<String> {
    let mut at = (0..ids.len()).find(|&i| !done[i]).expect("a step is left");
    let mut path: Vec<usize> = Vec::new();
    while !path.contains(&at) {
        path.push(at);
        at = needed(at)
            .find(|&j| !done[j])
            .expect("a step left over needs another left over");
    }
    let from = path.iter().position(|&p| p == at).expect("repeats");
    let mut cycle: Vec<String> = path[from..].iter().map(|&i| ids[i].clone()).collect();
    cycle.reverse();
    cycle.push(cycle[0].clone());
    cycle
}

impl Workflow {
    /// The order the experiment's steps run in ([`step_order`]); a workflow that validated has no
    /// cycle, and one that somehow does runs its steps as written.
    pub fn run_order(&self) -> Vec<usize> {
        let ids = self.step_ids();
        step_order(&ids, &self.step_needs()).unwrap_or_else(|_| (0..ids.len()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_first_and_otherwise_as_written() {
        let order = step_order(
            &ids(&["a", "b", "c", "d"]),
            &[ids(&["c"]), vec![], vec![], ids(&["a"])],
        );
        assert_eq!(order, Ok(vec![1, 2, 0, 3]));
    }

    #[test]
    fn a_cycle_is_named_in_the_order_it_runs() {
        let order = step_order(&ids(&["a", "b", "c"]), &[vec![], ids(&["c"]), ids(&["b"])]);
        assert_eq!(order, Err(ids(&["c", "b", "c"])));
    }
}
