//! [`WeightSource`]: what the forward pass needs from weights (a tensor and its shape by
//! name), implemented by the memory-mapped [`WeightFile`] and by the in-memory
//! [`WeightSet`], so tests can run the network on synthetic weights without writing
//! a 153 MB file first.
use std::collections::HashMap;
use std::path::PathBuf;

use super::table::check_against_table;
use super::{synth_weights, NamedTensor, Result, WeightError, WeightFile};

/// Read access to named f32 tensors.
pub trait WeightSource {
    /// The data of `name`, row-major.
    fn tensor(&self, name: &str) -> Result<&[f32]>;
    /// The shape of `name`.
    fn shape(&self, name: &str) -> Result<&[usize]>;
    /// The data of `name` after checking its shape.
    fn tensor_with_shape(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let found = self.shape(name)?;
        if found != shape {
            return Err(WeightError::WrongShape {
                path: PathBuf::from(self.origin()),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: found.to_vec(),
            });
        }
        self.tensor(name)
    }
    /// Where the weights come from, for messages.
    fn origin(&self) -> String;
}

impl WeightSource for WeightFile {
    fn tensor(&self, name: &str) -> Result<&[f32]> {
        WeightFile::tensor(self, name)
    }
    fn shape(&self, name: &str) -> Result<&[usize]> {
        WeightFile::shape(self, name)
    }
    fn origin(&self) -> String {
        self.path().display().to_string()
    }
}

/// Owned tensors looked up by name.
#[derive(Clone, Debug)]
pub struct WeightSet {
    origin: String,
    tensors: Vec<NamedTensor>,
    index: HashMap<String, usize>,
}

impl WeightSet {
    /// Wraps tensors; names must be unique and data lengths must match shapes.
    pub fn new(origin: impl Into<String>, tensors: Vec<NamedTensor>) -> Result<Self> {
        let mut index = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            t.as_ref().check()?;
            if index.insert(t.name.clone(), i).is_some() {
                return Err(WeightError::InvalidInput {
                    detail: format!("tensor name '{}' given twice", t.name),
                });
            }
        }
        Ok(WeightSet {
            origin: origin.into(),
            tensors,
            index,
        })
    }

    /// The synthetic weights of `seed` (the reference fixtures use seed 1).
    pub fn synthetic(seed: u64) -> Self {
        let tensors = synth_weights(seed);
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        WeightSet {
            origin: format!("synthetic weights (seed {seed})"),
            tensors,
            index,
        }
    }

    /// The tensors in their original order.
    pub fn tensors(&self) -> &[NamedTensor] {
        &self.tensors
    }

    /// Checks that the set is exactly the model's parameter table.
    pub fn check_topology(&self) -> Result<()> {
        check_against_table(
            self.tensors
                .iter()
                .map(|t| (t.name.as_str(), t.shape.as_slice())),
        )
        .into_result(PathBuf::from(&self.origin))
    }

    fn get(&self, name: &str) -> Result<&NamedTensor> {
        self.index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| WeightError::NoSuchTensor {
                path: PathBuf::from(&self.origin),
                name: name.to_string(),
            })
    }
}

impl WeightSource for WeightSet {
    fn tensor(&self, name: &str) -> Result<&[f32]> {
        self.get(name).map(|t| t.data.as_slice())
    }
    fn shape(&self, name: &str) -> Result<&[usize]> {
        self.get(name).map(|t| t.shape.as_slice())
    }
    fn origin(&self) -> String {
        self.origin.clone()
    }
}
