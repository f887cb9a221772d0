//! What the Helm chart says about the images: its appVersion (the images' tag, and the tag the
//! chart's templates use when `image.tag`/`sidecarImage.tag` are empty) and the repositories its
//! values name. The images are written under those names only when they are ours, so a chart
//! default can never point at an image this tool does not build.

use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::images::{OPERATOR_REPOSITORY, SIDECAR_REPOSITORY};

#[derive(Debug, PartialEq, Eq)]
pub struct Chart {
    pub app_version: String,
    pub operator_repository: String,
    pub sidecar_repository: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartYaml {
    app_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValuesYaml {
    image: Option<Repository>,
    sidecar_image: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    repository: Option<String>,
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not the YAML expected", path.display()))
}

impl Chart {
    /// Reads `Chart.yaml` and `values.yaml` of the chart in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Chart> {
        let chart_path = dir.join("Chart.yaml");
        let values_path = dir.join("values.yaml");
        let chart: ChartYaml = read_yaml(&chart_path)?;
        let values: ValuesYaml = read_yaml(&values_path)?;
        let app_version = chart
            .app_version
            .filter(|v| !v.is_empty())
            .with_context(|| format!("{}: expected an appVersion", chart_path.display()))?;
        let repository = |field: &str, r: Option<Repository>| {
            r.and_then(|r| r.repository)
                .filter(|r| !r.is_empty())
                .with_context(|| {
                    format!(
                        "{}: expected {field}.repository (an image name)",
                        values_path.display()
                    )
                })
        };
        Ok(Chart {
            app_version,
            operator_repository: repository("image", values.image)?,
            sidecar_repository: repository("sidecarImage", values.sidecar_image)?,
        })
    }

    /// Fails unless the chart's default repositories are the images this tool writes.
    pub fn check_repositories(&self) -> anyhow::Result<()> {
        for (field, found, ours) in [
            (
                "image.repository",
                &self.operator_repository,
                OPERATOR_REPOSITORY,
            ),
            (
                "sidecarImage.repository",
                &self.sidecar_repository,
                SIDECAR_REPOSITORY,
            ),
        ] {
            if found != ours {
                bail!(
                    "the chart's values.yaml {field} is {found:?} but this tool writes {ours:?}: \
                     change one of them so the chart's default image is the one built"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn repo_chart() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/habitat-operator")
    }

    #[test]
    fn the_repositorys_chart_names_the_images_this_tool_writes_at_the_crate_version() {
        let chart = Chart::read(&repo_chart()).unwrap();
        chart.check_repositories().unwrap();
        // The operator's default sidecar image is tagged with the crate version
        // (DEFAULT_SIDECAR_IMAGE), so the chart's appVersion must be that version too.
        assert_eq!(chart.app_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn a_chart_naming_another_repository_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "appVersion: \"1.2.3\"\n").unwrap();
        std::fs::write(
            dir.path().join("values.yaml"),
            format!(
                "image:\n  repository: {OPERATOR_REPOSITORY}\nsidecarImage:\n  repository: \
                 example.com/other/hab\n"
            ),
        )
        .unwrap();
        let chart = Chart::read(dir.path()).unwrap();
        assert_eq!(chart.app_version, "1.2.3");
        let err = chart.check_repositories().unwrap_err().to_string();
        assert!(
            err.contains("sidecarImage.repository") && err.contains("example.com/other/hab"),
            "{err}"
        );
    }

    #[test]
    fn a_chart_without_app_version_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "name: x\n").unwrap();
        std::fs::write(dir.path().join("values.yaml"), "{}\n").unwrap();
        let err = format!("{:#}", Chart::read(dir.path()).unwrap_err());
        assert!(err.contains("Chart.yaml: expected an appVersion"), "{err}");
    }
}
