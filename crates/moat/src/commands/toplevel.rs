//! Docker's top-level commands, as short forms of moat's own: each arm hands its arguments to
//! the long form's code, so the two cannot drift apart.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::image::{self, ImageCommand};
use super::{inspect, system};

#[derive(Subcommand)]
pub enum TopLevel {
    /// List images (`moat image ls`).
    Images(image::ListArgs),
    /// Pull an image (`moat image pull`).
    Pull(image::PullArgs),
    /// Push a stored image to its registry (`moat image push`).
    Push(image::PushArgs),
    /// Give a stored image another name (`moat image tag`).
    Tag(image::TagArgs),
    /// Write images to a tar archive (`moat image save`).
    Save(image::SaveArgs),
    /// Load the images in a tar archive (`moat image load`).
    Load(image::LoadArgs),
    /// Show containers, pods, zones or images as JSON, whichever each name finds first.
    Inspect(inspect::InspectArgs),
    /// Versions of moat, the guest kernel, QEMU and the runtime in zones.
    Version(system::VersionArgs),
    /// The accelerator and why, the assets, what the state root holds.
    Info(system::InfoArgs),
    /// Disk use and clean-up across images, containers and volumes.
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Manage containers (`prune`; the other container commands are top-level).
    #[command(subcommand)]
    Container(system::ContainerCommand),
}

pub fn run(root: &Path, command: TopLevel) -> anyhow::Result<ExitCode> {
    match command {
        TopLevel::Images(args) => image::run(root, ImageCommand::Ls(args)),
        TopLevel::Pull(args) => image::run(root, ImageCommand::Pull(args)),
        TopLevel::Push(args) => image::run(root, ImageCommand::Push(args)),
        TopLevel::Tag(args) => image::run(root, ImageCommand::Tag(args)),
        TopLevel::Save(args) => image::run(root, ImageCommand::Save(args)),
        TopLevel::Load(args) => image::run(root, ImageCommand::Load(args)),
        TopLevel::Inspect(args) => inspect::run(root, &args),
        TopLevel::Version(args) => system::version(args),
        TopLevel::Info(args) => system::info(root, args),
        TopLevel::System(command) => system::run(root, command),
        TopLevel::Container(command) => system::run_container(root, command),
    }
}
