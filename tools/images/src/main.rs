//! `habitat-images`: the project's own two images, `ghcr.io/habitat-rs/hab` (the sidecar image
//! the operator's init containers copy `hab` from) and `ghcr.io/habitat-rs/habitat-operator`,
//! written by the OCI writer `hab pkg export container` uses (`habitat_sidecar::oci`), with no
//! daemon, no base image and no registry. Same binaries, same digests.
//! Names and tag come from the Helm chart (its values' repositories and its appVersion), and a
//! chart that names other repositories is an error, so the chart's defaults always exist.
//! `scripts/images` builds the binaries and runs this.

mod chart;
mod images;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "habitat-images",
    version,
    about = "Writes the hab and habitat-operator images as OCI layouts and docker-load tarballs"
)]
struct Args {
    /// The `hab` binary to put at /bin/hab (static, or dynamic: then its ELF interpreter and
    /// shared libraries come along).
    #[arg(long, value_name = "FILE")]
    hab: PathBuf,
    /// The `habitat-operator` binary to put at /habitat-operator.
    #[arg(long, value_name = "FILE")]
    operator: PathBuf,
    /// A busybox (Debian's busybox-static) put at /bin/busybox, with /bin/cp and /bin/sh: the
    /// init container runs `cp /bin/hab /hab-bin/hab`.
    #[arg(long, value_name = "FILE", default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// The Helm chart whose appVersion tags the images and whose values name them.
    #[arg(long, value_name = "DIR", default_value = "charts/habitat-operator")]
    chart: PathBuf,
    /// Where `hab.oci`, `habitat-operator.oci`, `hab.tar` and `habitat-operator.tar` go.
    #[arg(long, value_name = "DIR", default_value = "target/images")]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let chart = chart::Chart::read(&args.chart)?;
    chart.check_repositories()?;
    let created = habitat_sidecar::oci::source_date_epoch()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let builds = [
        (
            images::sidecar_image(&args.hab, &args.busybox, &chart.app_version, created)?,
            images::SIDECAR_REPOSITORY,
            images::SIDECAR_FILE_STEM,
        ),
        (
            images::operator_image(&args.operator, &chart.app_version, created)?,
            images::OPERATOR_REPOSITORY,
            images::OPERATOR_FILE_STEM,
        ),
    ];
    for (built, repository, stem) in &builds {
        let reference = images::reference(repository, &chart.app_version)?;
        let layout = args.output.join(format!("{stem}.oci"));
        let written = images::write_layout(&built.image, &layout, &reference)?;
        let archive = args.output.join(format!("{stem}.tar"));
        built
            .image
            .write_docker_archive(&archive, std::slice::from_ref(&reference))
            .with_context(|| format!("writing {}", archive.display()))?;
        // One line per image, read by tests/tests/images.rs and scripts/images.
        println!(
            "{reference} layout {} archive {} manifest {} binary {}",
            layout.display(),
            archive.display(),
            written.manifest.digest,
            if built.static_binary {
                "static"
            } else {
                "dynamic (with its ELF interpreter and libraries)"
            },
        );
    }
    Ok(())
}
