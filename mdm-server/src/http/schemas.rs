//! OpenAPI schemas for the domain's string enums. The domain stays free of web crates, so
//! their schemas are written here, from the same lists the domain parses.

use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::domain::device::{DeviceStatus, Platform, ALL_STATUSES};
use crate::domain::maintenance::WindowStatus;
use crate::domain::role::{Role, ALL_ROLES};

fn string_enum(values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().collect::<Vec<_>>()))
        .into()
}

macro_rules! string_enum_schema {
    ($ty:ty, $name:literal, $values:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string_enum($values)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_enum_schema!(
    Platform,
    "Platform",
    [Platform::Android.as_str(), Platform::Ios.as_str()]
);
string_enum_schema!(
    DeviceStatus,
    "DeviceStatus",
    ALL_STATUSES.map(DeviceStatus::as_str)
);
string_enum_schema!(Role, "Role", ALL_ROLES.map(Role::as_str));
string_enum_schema!(
    WindowStatus,
    "WindowStatus",
    WindowStatus::ALL.map(WindowStatus::as_str)
);
