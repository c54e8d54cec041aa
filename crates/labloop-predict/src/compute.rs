//! Where the neural model computes: burn's `flex` CPU backend by default; with the `gpu` cargo
//! feature, wgpu (Vulkan, Metal, DX12) when an adapter initialises, else a clean fallback to the CPU.

use burn::prelude::Device;
use std::sync::OnceLock;

/// Which compute backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's pure-Rust `flex` backend.
    Cpu,
    /// wgpu, when built with the `gpu` feature and an adapter initialises.
    Gpu,
    /// The GPU when there is one, else the CPU.
    Auto,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown backend `{other}`: expected cpu, gpu or auto"
            )),
        }
    }
}

/// A device to compute on, with the backend it turned out to be.
#[derive(Clone, Debug)]
pub struct Compute {
    /// burn's device handle.
    pub device: Device,
    /// `cpu` or `gpu`: what was actually initialised.
    pub backend: Backend,
    /// Why the GPU was not used, when it was asked for and is not.
    pub fallback: Option<String>,
}

impl Compute {
    /// The CPU backend.
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            backend: Backend::Cpu,
            fallback: None,
        }
    }

    /// The device for `wanted`. `Gpu` is an error when no adapter initialises (so a user who asked
    /// for it learns why); `Auto` falls back to the CPU and says why in `fallback`.
    pub fn select(wanted: Backend) -> Result<Self, String> {
        match wanted {
            Backend::Cpu => Ok(Self::cpu()),
            Backend::Gpu => gpu().map_err(|e| format!("no GPU backend: {e}")),
            // Without the `gpu` feature the CPU is the only choice: no fallback to report.
            Backend::Auto => Ok(gpu().unwrap_or_else(|e| Self {
                fallback: cfg!(feature = "gpu").then_some(e),
                ..Self::cpu()
            })),
        }
    }

    /// The process-wide default, chosen once: `LABLOOP_BACKEND` (cpu, gpu, auto), else `auto`.
    pub fn default_device() -> &'static Compute {
        static DEFAULT: OnceLock<Compute> = OnceLock::new();
        DEFAULT.get_or_init(|| {
            let wanted = std::env::var("LABLOOP_BACKEND")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(Backend::Auto);
            Self::select(wanted).unwrap_or_else(|e| Self {
                fallback: Some(e),
                ..Self::cpu()
            })
        })
    }
}

#[cfg(feature = "gpu")]
fn gpu() -> Result<Compute, String> {
    // One initialisation per process: wgpu's runtime cannot be set up twice.
    static GPU: OnceLock<Result<Device, String>> = OnceLock::new();
    GPU.get_or_init(|| {
        std::panic::catch_unwind(|| Device::wgpu_options().init())
            .map_err(|_| "the wgpu runtime panicked while starting".to_owned())?
            .map_err(|e| e.to_string())
    })
    .clone()
    .map(|device| Compute {
        device,
        backend: Backend::Gpu,
        fallback: None,
    })
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<Compute, String> {
    Err("labloop was built without the `gpu` feature".to_owned())
}
