//! Persistence of the segmentation context: the feature store (fed by events), the
//! scored insights, segments and memberships, scoring runs and calibrations.

pub mod entities;
pub mod migrations;
pub mod repo;
