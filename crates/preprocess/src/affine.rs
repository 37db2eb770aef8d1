//! Voxel-to-world affines from NIfTI headers, the tolerance check used to decide whether
//! scans are co-registered, and orientation codes (`LPS`, `RAS`, ...) for reporting.
//!
//! The affine follows NIfTI's own priority (the same as nibabel's `get_best_affine`):
//! the sform when `sform_code > 0`, else the qform when `qform_code > 0`, else a plain
//! scaling by `pixdim`. Voxels are never reoriented here; the codes are only reported.
use nifti::NiftiHeader;

/// A 3x4 affine (the last row is implicitly `0 0 0 1`), rows = world x, y, z.
pub type Affine = [[f64; 4]; 3];

/// The voxel-to-world affine a reader should use for this header.
pub fn header_affine(header: &NiftiHeader) -> Affine {
    if header.sform_code > 0 {
        let rows = [header.srow_x, header.srow_y, header.srow_z];
        let mut affine = [[0.0; 4]; 3];
        for (out, row) in affine.iter_mut().zip(rows) {
            for (o, v) in out.iter_mut().zip(row) {
                *o = f64::from(v);
            }
        }
        affine
    } else if header.qform_code > 0 {
        qform_affine(header)
    } else {
        let p = &header.pixdim;
        [
            [f64::from(p[1]), 0.0, 0.0, 0.0],
            [0.0, f64::from(p[2]), 0.0, 0.0],
            [0.0, 0.0, f64::from(p[3]), 0.0],
        ]
    }
}

/// The affine encoded by the quaternion fields (NIfTI-1 "method 2").
pub fn qform_affine(header: &NiftiHeader) -> Affine {
    let (mut b, mut c, mut d) = (
        f64::from(header.quatern_b),
        f64::from(header.quatern_c),
        f64::from(header.quatern_d),
    );
    let sum = b * b + c * c + d * d;
    let a = if sum > 1.0 {
        // Rounding made the quaternion slightly too long: renormalise, a = 0.
        let norm = sum.sqrt();
        b /= norm;
        c /= norm;
        d /= norm;
        0.0
    } else {
        (1.0 - sum).sqrt()
    };
    let rotation = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let qfac = if header.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let zooms = [
        f64::from(header.pixdim[1]),
        f64::from(header.pixdim[2]),
        f64::from(header.pixdim[3]) * qfac,
    ];
    let shift = [
        f64::from(header.quatern_x),
        f64::from(header.quatern_y),
        f64::from(header.quatern_z),
    ];
    let mut affine = [[0.0; 4]; 3];
    for r in 0..3 {
        for col in 0..3 {
            affine[r][col] = rotation[r][col] * zooms[col];
        }
        affine[r][3] = shift[r];
    }
    affine
}

/// Largest absolute element-wise difference between two affines.
pub fn max_affine_difference(a: &Affine, b: &Affine) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Affines that differ by more than this (mm, or mm per voxel) mean the scans are not
/// co-registered. Header round-off between tools is far below it; a one-voxel shift or a
/// different voxel size is far above it.
pub const AFFINE_TOLERANCE: f64 = 1e-3;

/// Orientation codes of the voxel axes, e.g. `"LPS"` for BraTS files: for each voxel axis
/// the world direction it mostly points to (R/L for x, A/P for y, S/I for z).
pub fn orientation_codes(affine: &Affine) -> String {
    const POSITIVE: [char; 3] = ['R', 'A', 'S'];
    const NEGATIVE: [char; 3] = ['L', 'P', 'I'];
    (0..3)
        .map(|col| {
            let mut best = 0;
            for row in 1..3 {
                if affine[row][col].abs() > affine[best][col].abs() {
                    best = row;
                }
            }
            match affine[best][col] {
                v if v > 0.0 => POSITIVE[best],
                v if v < 0.0 => NEGATIVE[best],
                _ => '?',
            }
        })
        .collect()
}

/// Render an affine on one line, for messages.
pub fn format_affine(affine: &Affine) -> String {
    let rows: Vec<String> = affine
        .iter()
        .map(|r| format!("[{} {} {} {}]", r[0], r[1], r[2], r[3]))
        .collect();
    rows.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qform_of_identity_quaternion_is_the_pixdim_scaling_plus_offset() {
        let header = NiftiHeader {
            pixdim: [1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
            quatern_x: 5.0,
            quatern_y: 6.0,
            quatern_z: 7.0,
            ..NiftiHeader::default()
        };
        let a = qform_affine(&header);
        assert_eq!(
            a,
            [
                [2.0, 0.0, 0.0, 5.0],
                [0.0, 3.0, 0.0, 6.0],
                [0.0, 0.0, 4.0, 7.0]
            ]
        );
    }

    #[test]
    fn qform_with_180_degree_turn_about_z_gives_lps() {
        // Quaternion (a,b,c,d) = (0,0,0,1) is a rotation by pi about z: x -> -x, y -> -y.
        let header = NiftiHeader {
            quatern_d: 1.0,
            pixdim: [1.0; 8],
            ..NiftiHeader::default()
        };
        let a = qform_affine(&header);
        assert_eq!(orientation_codes(&a), "LPS");
        assert!((a[0][0] + 1.0).abs() < 1e-12 && (a[1][1] + 1.0).abs() < 1e-12);
    }

    #[test]
    fn orientation_codes_follow_the_dominant_axis() {
        let ras = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        assert_eq!(orientation_codes(&ras), "RAS");
        let permuted = [
            [0.0, 0.0, -1.0, 0.0],
            [0.9, 0.1, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
        ];
        assert_eq!(orientation_codes(&permuted), "AIL");
    }
}
