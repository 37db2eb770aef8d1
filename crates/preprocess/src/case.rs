//! One patient case: the four MRI modalities, always identified by name, never by
//! position, and checked to form one co-registered scan.
//!
//! A case comes from four named files, from a folder whose file names say the modality
//! (BraTS 2018-2021 `*_t1`, `*_t2`, `*_flair`, `*_t1ce`; BraTS 2023 `*-t1n`, `*-t2w`,
//! `*-t2f`, `*-t1c`), or from a Decathlon 4D file with a stated channel order. Whatever
//! the source, the volumes are held in the network's channel order (T1, T2, FLAIR, T1ce)
//! and the case can say which file feeds which channel. All checks that need more than one
//! file (shape, affine) happen here; single-file checks live in the reader.
use std::fmt;
use std::path::{Path, PathBuf};

use nifti::NiftiHeader;

use crate::affine::{
    format_affine, max_affine_difference, orientation_codes, Affine, AFFINE_TOLERANCE,
};
use crate::error::{Error, Result};
use crate::nifti_read::{read_nifti, read_volume, shape_text};
use crate::normalize::mask_extent;
use crate::volume::Volume;

/// An MRI modality, named as the network's channels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    /// Native T1-weighted (BraTS 2023 `t1n`).
    T1,
    /// T2-weighted (`t2w`).
    T2,
    /// T2-FLAIR (`t2f`).
    Flair,
    /// T1 with gadolinium contrast (`t1c`, T1gd).
    T1ce,
}

impl Modality {
    /// The network's input channel order (the training code's `data_suffixes`).
    pub const NETWORK_ORDER: [Modality; 4] =
        [Modality::T1, Modality::T2, Modality::Flair, Modality::T1ce];

    /// The Decathlon (MSD Task01) 4D channel order: FLAIR, T1w, T1gd, T2w.
    pub const MSD_ORDER: [Modality; 4] =
        [Modality::Flair, Modality::T1, Modality::T1ce, Modality::T2];

    /// Network input channel of this modality.
    pub fn channel(self) -> usize {
        match self {
            Modality::T1 => 0,
            Modality::T2 => 1,
            Modality::Flair => 2,
            Modality::T1ce => 3,
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Modality::T1 => "T1",
            Modality::T2 => "T2",
            Modality::Flair => "FLAIR",
            Modality::T1ce => "T1ce",
        }
    }

    /// Parse a user-given name (case-insensitive; accepts the BraTS 2023 and MSD spellings).
    pub fn parse(text: &str) -> Result<Modality> {
        match text.trim().to_ascii_lowercase().as_str() {
            "t1" | "t1n" | "t1w" => Ok(Modality::T1),
            "t2" | "t2w" => Ok(Modality::T2),
            "flair" | "t2f" => Ok(Modality::Flair),
            "t1ce" | "t1c" | "t1gd" => Ok(Modality::T1ce),
            other => Err(Error::msg(format!(
                "unknown modality '{other}' (expected t1, t2, flair or t1ce)"
            ))),
        }
    }

    /// Parse a comma-separated order of all four modalities, e.g. `flair,t1,t1ce,t2`.
    pub fn parse_order(text: &str) -> Result<[Modality; 4]> {
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() != 4 {
            return Err(Error::msg(format!(
                "modality order '{text}' must name 4 modalities separated by commas"
            )));
        }
        let mut order = [Modality::T1; 4];
        for (slot, part) in order.iter_mut().zip(&parts) {
            *slot = Modality::parse(part)?;
        }
        for m in Modality::NETWORK_ORDER {
            if order.iter().filter(|&&o| o == m).count() != 1 {
                return Err(Error::msg(format!(
                    "modality order '{text}' must name {} exactly once",
                    m.name()
                )));
            }
        }
        Ok(order)
    }

    /// File-name endings (before `.nii`/`.nii.gz`) that identify this modality.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Modality::T1 => &["_t1", "-t1n"],
            Modality::T2 => &["_t2", "-t2w"],
            Modality::Flair => &["_flair", "-t2f"],
            Modality::T1ce => &["_t1ce", "-t1c"],
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one modality came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The modality.
    pub modality: Modality,
    /// The file it was read from.
    pub path: PathBuf,
    /// For a 4D file: the index along the fourth axis.
    pub volume_index: Option<usize>,
    /// Orientation codes of the file's affine, e.g. `LPS`.
    pub orientation: String,
}

/// Four co-registered volumes in the network's channel order.
#[derive(Debug, Clone)]
pub struct Case {
    /// Case name (from the file names), used to name outputs.
    pub name: String,
    /// Volumes indexed by [`Modality::channel`].
    pub volumes: [Volume; 4],
    /// Sources indexed by [`Modality::channel`].
    pub sources: [Source; 4],
    /// Header used as the template for outputs (the T1 file's, 3D).
    pub header: NiftiHeader,
    /// The common voxel-to-world affine.
    pub affine: Affine,
}

/// The name a file would have without `.nii` / `.nii.gz`, or `None` for other files.
fn nifti_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii"] {
        if lower.ends_with(ext) {
            return Some(name[..name.len() - ext.len()].to_string());
        }
    }
    None
}

impl Case {
    /// The four modality files named explicitly.
    pub fn from_files(t1: &Path, t2: &Path, flair: &Path, t1ce: &Path) -> Result<Case> {
        Case::from_named_files(&[
            (Modality::T1, t1.to_path_buf()),
            (Modality::T2, t2.to_path_buf()),
            (Modality::Flair, flair.to_path_buf()),
            (Modality::T1ce, t1ce.to_path_buf()),
        ])
    }

    /// Any list of (modality, file); each modality must appear exactly once.
    pub fn from_named_files(files: &[(Modality, PathBuf)]) -> Result<Case> {
        let mut slots: [Option<PathBuf>; 4] = Default::default();
        for (modality, path) in files {
            let slot = &mut slots[modality.channel()];
            if let Some(previous) = slot {
                return Err(Error::at(
                    path,
                    format!(
                        "duplicate {modality} input (already given as {})",
                        previous.display()
                    ),
                ));
            }
            *slot = Some(path.clone());
        }
        let mut paths = Vec::with_capacity(4);
        for (modality, slot) in Modality::NETWORK_ORDER.iter().zip(slots) {
            match slot {
                Some(p) => paths.push(p),
                None => {
                    return Err(Error::msg(format!(
                        "missing {modality} input: all of T1, T2, FLAIR and T1ce are required"
                    )))
                }
            }
        }
        // Decompressing four files is most of the reading time: one thread per file.
        let loaded: Vec<Result<(Volume, NiftiHeader, Affine)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = paths
                .iter()
                .map(|p| scope.spawn(move || read_volume(p)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::msg("a reader thread failed")))
                })
                .collect()
        });
        let mut volumes = Vec::with_capacity(4);
        let mut headers = Vec::with_capacity(4);
        let mut affines = Vec::with_capacity(4);
        for item in loaded {
            let (v, h, a) = item?;
            volumes.push(v);
            headers.push(h);
            affines.push(a);
        }
        let sources: Vec<Source> = Modality::NETWORK_ORDER
            .iter()
            .zip(&paths)
            .zip(&affines)
            .map(|((&modality, path), affine)| Source {
                modality,
                path: path.clone(),
                volume_index: None,
                orientation: orientation_codes(affine),
            })
            .collect();
        let name = nifti_stem(&paths[0])
            .map(|stem| {
                Modality::T1
                    .suffixes()
                    .iter()
                    .find_map(|s| {
                        stem.to_ascii_lowercase()
                            .ends_with(s)
                            .then(|| stem[..stem.len() - s.len()].to_string())
                    })
                    .unwrap_or(stem)
            })
            .unwrap_or_else(|| "case".to_string());
        Case::assemble(name, volumes, sources, headers.swap_remove(0), affines)
    }

    /// A folder holding one case with BraTS 2018-2021 or BraTS 2023 file names.
    pub fn from_dir(dir: &Path) -> Result<Case> {
        let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::at(dir, "folder does not exist"),
            _ => Error::at(dir, format!("cannot list folder: {e}")),
        })?;
        let mut found: Vec<(Modality, PathBuf)> = Vec::new();
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for path in names {
            let stem = match nifti_stem(&path) {
                Some(s) => s.to_ascii_lowercase(),
                None => continue,
            };
            // The suffixes are disjoint as endings (`x_t1ce` does not end in `_t1`).
            let modality = Modality::NETWORK_ORDER
                .iter()
                .copied()
                .find(|m| m.suffixes().iter().any(|s| stem.ends_with(s)));
            if let Some(m) = modality {
                if let Some((_, previous)) = found.iter().find(|(fm, _)| *fm == m) {
                    return Err(Error::at(
                        dir,
                        format!(
                            "duplicate {m} files: {} and {}",
                            previous.display(),
                            path.display()
                        ),
                    ));
                }
                found.push((m, path));
            }
        }
        for m in Modality::NETWORK_ORDER {
            if !found.iter().any(|(fm, _)| *fm == m) {
                let s = m.suffixes();
                return Err(Error::at(
                    dir,
                    format!(
                        "missing {m}: no file named *{}.nii[.gz] or *{}.nii[.gz]",
                        s[0], s[1]
                    ),
                ));
            }
        }
        Case::from_named_files(&found)
    }

    /// A Decathlon-style 4D file whose fourth axis holds the modalities in `order`
    /// (default [`Modality::MSD_ORDER`]).
    pub fn from_msd(path: &Path, order: Option<[Modality; 4]>) -> Result<Case> {
        let order = order.unwrap_or(Modality::MSD_ORDER);
        let image = read_nifti(path)?;
        if image.shape.len() != 4 || image.shape[3] != 4 {
            return Err(Error::at(
                path,
                format!(
                    "expected a 4D volume with 4 modalities along the 4th axis, found {}",
                    shape_text(&image.shape)
                ),
            ));
        }
        let dims = [image.shape[0], image.shape[1], image.shape[2]];
        let n = dims.iter().product::<usize>();
        let mut volumes: [Option<Volume>; 4] = Default::default();
        let mut sources: [Option<Source>; 4] = Default::default();
        let orientation = orientation_codes(&image.affine);
        for (index, modality) in order.iter().enumerate() {
            let data = image.data[index * n..(index + 1) * n].to_vec();
            volumes[modality.channel()] = Some(Volume::new(dims, data)?);
            sources[modality.channel()] = Some(Source {
                modality: *modality,
                path: path.to_path_buf(),
                volume_index: Some(index),
                orientation: orientation.clone(),
            });
        }
        let mut header = image.header.clone();
        header.dim[0] = 3;
        for d in &mut header.dim[4..] {
            *d = 1;
        }
        let name = nifti_stem(path).unwrap_or_else(|| "case".to_string());
        let volumes: Vec<Volume> = volumes.into_iter().flatten().collect();
        let sources: Vec<Source> = sources.into_iter().flatten().collect();
        Case::assemble(name, volumes, sources, header, vec![image.affine; 4])
    }

    /// Build from volumes already in memory (phantoms, tests); runs the same checks.
    pub fn from_volumes(
        name: &str,
        volumes: [Volume; 4],
        header: NiftiHeader,
        label: &Path,
    ) -> Result<Case> {
        let affine = crate::affine::header_affine(&header);
        let orientation = orientation_codes(&affine);
        let sources = Modality::NETWORK_ORDER
            .iter()
            .map(|&modality| Source {
                modality,
                path: label.to_path_buf(),
                volume_index: Some(modality.channel()),
                orientation: orientation.clone(),
            })
            .collect();
        Case::assemble(
            name.to_string(),
            volumes.into(),
            sources,
            header,
            vec![affine; 4],
        )
    }

    fn assemble(
        name: String,
        volumes: Vec<Volume>,
        sources: Vec<Source>,
        header: NiftiHeader,
        affines: Vec<Affine>,
    ) -> Result<Case> {
        let where_ = |s: &Source| match s.volume_index {
            Some(i) if sources.iter().all(|o| o.path == s.path) => {
                format!("{} (volume {i}, {})", s.path.display(), s.modality)
            }
            _ => format!("{} ({})", s.path.display(), s.modality),
        };
        let reference = &sources[0];
        for c in 1..4 {
            if volumes[c].dims() != volumes[0].dims() {
                return Err(Error::msg(format!(
                    "{}: shape {} differs from {} shape {}",
                    where_(&sources[c]),
                    shape_text(&volumes[c].dims()),
                    where_(reference),
                    shape_text(&volumes[0].dims())
                )));
            }
            let diff = max_affine_difference(&affines[c], &affines[0]);
            if diff.is_nan() || diff > AFFINE_TOLERANCE {
                return Err(Error::msg(format!(
                    "{}: affine {} differs from {} affine {} by {diff:.4} (tolerance {AFFINE_TOLERANCE}); the scans are not co-registered",
                    where_(&sources[c]),
                    format_affine(&affines[c]),
                    where_(reference),
                    format_affine(&affines[0])
                )));
            }
        }
        for (volume, source) in volumes.iter().zip(&sources) {
            if mask_extent(volume).is_none() {
                return Err(Error::msg(format!(
                    "{}: no voxel > 0 (all-zero volume, empty brain mask)",
                    where_(source)
                )));
            }
        }
        let volumes: [Volume; 4] = volumes
            .try_into()
            .map_err(|_| Error::msg("a case needs exactly four volumes"))?;
        let sources: [Source; 4] = sources
            .try_into()
            .map_err(|_| Error::msg("a case needs exactly four sources"))?;
        Ok(Case {
            name,
            volumes,
            sources,
            header,
            affine: affines[0],
        })
    }

    /// Spatial dimensions shared by the four volumes.
    pub fn dims(&self) -> [usize; 3] {
        self.volumes[0].dims()
    }

    /// The volume of one modality.
    pub fn volume(&self, modality: Modality) -> &Volume {
        &self.volumes[modality.channel()]
    }

    /// Which file feeds which network channel, one line per channel.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        for s in &self.sources {
            let index = s
                .volume_index
                .filter(|_| self.sources.iter().all(|o| o.path == s.path))
                .map(|i| format!(" [volume {i}]"))
                .unwrap_or_default();
            lines.push(format!(
                "channel {} {:<5} <- {}{} (orientation {}, {})",
                s.modality.channel(),
                s.modality.name(),
                s.path.display(),
                index,
                s.orientation,
                shape_text(&self.dims())
            ));
        }
        lines.join("\n")
    }
}
