//! Colormaps and resizing against the values the reference libraries give.

use gaze_render::{Colormap, Map};

/// The positions every colormap is checked at; none lies on a table-entry boundary.
const XS: [f32; 9] = [0.0, 0.1, 0.25, 0.37, 0.5, 0.63, 0.75, 0.9, 1.0];

/// Made with matplotlib 3.11.2:
/// python -c "import matplotlib as m, numpy as np; x=[0,0.1,0.25,0.37,0.5,0.63,0.75,0.9,1]; [print(n, np.round(m.colormaps[n](x),4).tolist()) for n in ['viridis','jet','inferno','magma','gray','binary','bwr']]"
const MATPLOTLIB: [(Colormap, [[f32; 4]; 9]); 7] = [
    (
        Colormap::Viridis,
        [
            [0.267, 0.0049, 0.3294, 1.0],
            [0.2826, 0.1409, 0.4575, 1.0],
            [0.2297, 0.3224, 0.5457, 1.0],
            [0.1758, 0.4413, 0.5577, 1.0],
            [0.1276, 0.5669, 0.5506, 1.0],
            [0.162, 0.6873, 0.4991, 1.0],
            [0.3692, 0.7889, 0.3829, 1.0],
            [0.7414, 0.8734, 0.1496, 1.0],
            [0.9932, 0.9062, 0.1439, 1.0],
        ],
    ),
    (
        Colormap::Jet,
        [
            [0.0, 0.0, 0.5, 1.0],
            [0.0, 0.0, 0.9456, 1.0],
            [0.0, 0.5039, 1.0, 1.0],
            [0.0601, 0.9745, 0.9077, 1.0],
            [0.4902, 1.0, 0.4775, 1.0],
            [0.9077, 1.0, 0.0601, 1.0],
            [1.0, 0.5817, 0.0, 1.0],
            [0.9456, 0.0298, 0.0, 1.0],
            [0.5, 0.0, 0.0, 1.0],
        ],
    ),
    (
        Colormap::Inferno,
        [
            [0.0015, 0.0005, 0.0139, 1.0],
            [0.0874, 0.0446, 0.2248, 1.0],
            [0.3415, 0.0623, 0.4294, 1.0],
            [0.5284, 0.1303, 0.4181, 1.0],
            [0.7357, 0.2159, 0.3302, 1.0],
            [0.8982, 0.3589, 0.1889, 1.0],
            [0.9784, 0.5579, 0.0349, 1.0],
            [0.9644, 0.8438, 0.2734, 1.0],
            [0.9884, 0.9984, 0.6449, 1.0],
        ],
    ),
    (
        Colormap::Magma,
        [
            [0.0015, 0.0005, 0.0139, 1.0],
            [0.0788, 0.0542, 0.2117, 1.0],
            [0.3167, 0.0717, 0.4854, 1.0],
            [0.5004, 0.1437, 0.5079, 1.0],
            [0.7164, 0.215, 0.4753, 1.0],
            [0.9089, 0.3248, 0.3853, 1.0],
            [0.9867, 0.5356, 0.3822, 1.0],
            [0.9957, 0.8127, 0.5726, 1.0],
            [0.9871, 0.9914, 0.7495, 1.0],
        ],
    ),
    (
        Colormap::Gray,
        [
            [0.0, 0.0, 0.0, 1.0],
            [0.098, 0.098, 0.098, 1.0],
            [0.251, 0.251, 0.251, 1.0],
            [0.3686, 0.3686, 0.3686, 1.0],
            [0.502, 0.502, 0.502, 1.0],
            [0.6314, 0.6314, 0.6314, 1.0],
            [0.7529, 0.7529, 0.7529, 1.0],
            [0.902, 0.902, 0.902, 1.0],
            [1.0, 1.0, 1.0, 1.0],
        ],
    ),
    (
        Colormap::Binary,
        [
            [1.0, 1.0, 1.0, 1.0],
            [0.902, 0.902, 0.902, 1.0],
            [0.749, 0.749, 0.749, 1.0],
            [0.6314, 0.6314, 0.6314, 1.0],
            [0.498, 0.498, 0.498, 1.0],
            [0.3686, 0.3686, 0.3686, 1.0],
            [0.2471, 0.2471, 0.2471, 1.0],
            [0.098, 0.098, 0.098, 1.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    ),
    (
        Colormap::Bwr,
        [
            [0.0, 0.0, 1.0, 1.0],
            [0.1961, 0.1961, 1.0, 1.0],
            [0.502, 0.502, 1.0, 1.0],
            [0.7373, 0.7373, 1.0, 1.0],
            [1.0, 0.9961, 0.9961, 1.0],
            [1.0, 0.7373, 0.7373, 1.0],
            [1.0, 0.4941, 0.4941, 1.0],
            [1.0, 0.1961, 0.1961, 1.0],
            [1.0, 0.0, 0.0, 1.0],
        ],
    ),
];

/// Made with shap 0.51.0:
/// python -c "import shap, numpy as np; print(np.round(shap.plots.colors.red_transparent_blue([0,0.1,0.25,0.37,0.5,0.63,0.75,0.9,1]),4).tolist())"
const RED_TRANSPARENT_BLUE: [[f32; 4]; 9] = [
    [0.1176, 0.5333, 0.898, 1.0],
    [0.1176, 0.5333, 0.898, 0.8029],
    [0.1176, 0.5333, 0.898, 0.4955],
    [0.1176, 0.5333, 0.898, 0.259],
    [0.9031, 0.1039, 0.4023, 0.0],
    [1.0, 0.051, 0.3412, 0.259],
    [1.0, 0.051, 0.3412, 0.5034],
    [1.0, 0.051, 0.3412, 0.8029],
    [1.0, 0.051, 0.3412, 1.0],
];

/// Made with OpenCV 5.0.0, at table indices 0, 25, 64, 94, 128, 161, 192, 230, 255 (those of `XS`):
/// python -c "import cv2, numpy as np; print(cv2.applyColorMap(np.array([[0,25,64,94,128,161,192,230,255]],np.uint8), cv2.COLORMAP_JET)[0][:, ::-1].tolist())"
const OPENCV_JET: [[u8; 3]; 9] = [
    [0, 0, 128],
    [0, 0, 228],
    [0, 128, 255],
    [0, 248, 255],
    [130, 255, 126],
    [255, 248, 0],
    [255, 124, 0],
    [228, 0, 0],
    [128, 0, 0],
];

fn assert_close(cmap: Colormap, got: [f32; 4], want: [f32; 4], x: f32) {
    for c in 0..4 {
        // Within one byte step (the references are rounded to four decimals).
        assert!((got[c] - want[c]).abs() <= 1.0 / 255.0, "{cmap} at {x}: got {got:?}, matplotlib gives {want:?}");
    }
}

#[test]
fn colormaps_match_matplotlib_at_fixed_points() {
    for (cmap, want) in MATPLOTLIB {
        for (x, w) in XS.iter().zip(want) {
            assert_close(cmap, cmap.rgba_f32(*x), w, *x);
            // The byte colour is the float colour rounded.
            let bytes = cmap.rgba(*x);
            for c in 0..4 {
                assert!((f32::from(bytes[c]) / 255.0 - w[c]).abs() <= 1.0 / 255.0);
            }
        }
    }
}

#[test]
fn red_transparent_blue_matches_shap() {
    let cmap = Colormap::RedTransparentBlue;
    for (x, w) in XS.iter().zip(RED_TRANSPARENT_BLUE) {
        assert_close(cmap, cmap.rgba_f32(*x), w, *x);
    }
}

#[test]
fn opencv_jet_matches_opencv() {
    for (x, w) in XS.iter().zip(OPENCV_JET) {
        let got = Colormap::JetOpencv.rgba(*x);
        assert_eq!([got[0], got[1], got[2]], w, "at {x}");
    }
}

/// Made with OpenCV 5.0.0:
/// python -c "import cv2,numpy as np; m=np.array([[0,1,4,2],[3,-1,5,0],[2,2,-3,1]],'f4'); [print(np.round(cv2.resize(m,s,interpolation=cv2.INTER_LINEAR),5).tolist()) for s in [(5,7),(3,2),(8,6)]]"
const SOURCE: [f32; 12] = [0.0, 1.0, 4.0, 2.0, 3.0, -1.0, 5.0, 0.0, 2.0, 2.0, -3.0, 1.0];

#[test]
fn bilinear_resize_matches_opencv() {
    let m = Map::new(SOURCE.to_vec(), (3, 4)).unwrap();
    let cases: [((usize, usize), Vec<f32>); 3] = [
        (
            (7, 5),
            vec![
                0.0, 0.7, 2.5, 3.4, 2.0, //
                0.42857, 0.62857, 2.42857, 3.41429, 1.71429, //
                1.71429, 0.41429, 2.21429, 3.45714, 0.85714, //
                3.0, 0.2, 2.0, 3.5, 0.0, //
                2.57143, 0.97143, 0.92857, 1.22857, 0.42857, //
                2.14286, 1.74286, -0.14286, -1.04286, 0.85714, //
                2.0, 2.0, -0.5, -1.8, 1.0,
            ],
        ),
        ((2, 3), vec![0.70833, 2.375, 1.95833, 2.08333, 0.125, 0.45833]),
        (
            (6, 8),
            vec![
                0.0, 0.25, 0.75, 1.75, 3.25, 3.5, 2.5, 2.0, //
                0.75, 0.6875, 0.5625, 1.4375, 3.3125, 3.5625, 2.1875, 1.5, //
                2.25, 1.5625, 0.1875, 0.8125, 3.4375, 3.6875, 1.5625, 0.5, //
                2.75, 2.0, 0.5, 0.5625, 2.1875, 2.3125, 0.9375, 0.25, //
                2.25, 2.0, 1.5, 0.6875, -0.4375, -0.5625, 0.3125, 0.75, //
                2.0, 2.0, 2.0, 0.75, -1.75, -2.0, 0.0, 1.0,
            ],
        ),
    ];
    for (size, want) in cases {
        let got = m.resize_bilinear(size).unwrap();
        assert_eq!(got.size(), size);
        for (i, (g, w)) in got.values().iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-4, "{size:?} at {i}: got {g}, OpenCV gives {w}");
        }
    }
}
