//! JSON-RPC 2.0 plumbing shared by Nelumbo's daemons, compatible with Lotus's go-jsonrpc:
//! positional parameters, `Filecoin.*` method names, channel methods over WebSocket, and
//! Lotus's token permissions (`read`, `write`, `sign`, `admin`).
//!
//! Every method is defined once as a type implementing [`RpcMethod`] (name, parameter names,
//! permission, description, typed parameters and result); the server's registry, the typed
//! [`RpcClient`] and the OpenRPC document (`rpc.discover`) are all built from those
//! definitions.

mod client;
mod error;
mod local;
mod method;
mod openrpc;
mod permission;
mod server;
mod token;

pub use client::{ApiInfo, ClientError, DEFAULT_CALL_TIMEOUT, RpcClient};
pub use error::RpcError;
pub use local::{local_client, running_api};
pub use method::{RpcChannel, RpcMethod, decode_params, encode_params};
pub use openrpc::{METHODS, MethodDef, check_checked_in, definitions, openrpc_document};
pub use permission::{Permission, Permissions};
pub use server::{RpcModule, ServerConfig, rpc_router};
pub use token::{TokenError, TokenSecret, claimed_permissions, read_private, read_private_bytes};
// For `rpc_method!`'s expansion in other crates.
#[doc(hidden)]
pub use {linkme, schemars};

/// Declares a method type and lists it in [`METHODS`]:
///
/// ```ignore
/// rpc_method!(ChainHead, "Filecoin.ChainHead", Read, "The heaviest tipset.", [] () -> TipSet);
/// rpc_method!(WalletBalance, "Filecoin.WalletBalance", Read, "An address's balance.",
///     ["address"] (Address) -> TokenAmount);
/// // Allowed to operators' read tokens and to spoke tokens:
/// rpc_method!(ChainHead, "Nelumbo.ChainHead", Read | Spoke, "The head.", [] () -> TipSet);
/// // A channel method (WebSocket only): answers a channel id, then sends `HeadChange` lists.
/// rpc_method!(ChainNotify, "Filecoin.ChainNotify", Read, "Head changes.",
///     [] () -> u64, channel of Vec<HeadChange>);
/// ```
///
/// Every parameter, result and channel type implements `schemars::JsonSchema`: the API's
/// OpenRPC document is built from them.
#[macro_export]
macro_rules! rpc_method {
    (
        $name:ident, $wire:literal, $perm:ident $(| $also:ident)*, $desc:literal,
        [$($param:literal),* $(,)?] ($($pty:ty),* $(,)?) -> $ok:ty
    ) => {
        $crate::rpc_method!(@define $name, $wire, $perm $(| $also)*, $desc,
            [$($param),*] ($($pty),*) -> $ok, {});
    };
    (
        $name:ident, $wire:literal, $perm:ident $(| $also:ident)*, $desc:literal,
        [$($param:literal),* $(,)?] ($($pty:ty),* $(,)?) -> $ok:ty, channel of $item:ty
    ) => {
        $crate::rpc_method!(@define $name, $wire, $perm $(| $also)*, $desc,
            [$($param),*] ($($pty),*) -> $ok, {
                const CHANNEL: bool = true;
                fn result_schema(
                    generator: &mut $crate::schemars::SchemaGenerator,
                ) -> $crate::schemars::Schema {
                    generator.subschema_for::<$item>()
                }
            });
        impl $crate::RpcChannel for $name {
            type Item = $item;
        }
    };
    (
        @define $name:ident, $wire:literal, $perm:ident $(| $also:ident)*, $desc:literal,
        [$($param:literal),*] ($($pty:ty),*) -> $ok:ty, { $($extra:tt)* }
    ) => {
        #[doc = $desc]
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl $crate::RpcMethod for $name {
            const NAME: &'static str = $wire;
            const PARAMS: &'static [&'static str] = &[$($param),*];
            const PERMISSION: $crate::Permission = $crate::Permission::$perm;
            const ALSO_ALLOWED: &'static [$crate::Permission] = &[$($crate::Permission::$also),*];
            const DESCRIPTION: &'static str = $desc;
            type Params = ($($pty,)*);
            type Ok = $ok;
            #[allow(unused_variables)]
            fn param_schemas(
                generator: &mut $crate::schemars::SchemaGenerator,
            ) -> ::std::vec::Vec<$crate::schemars::Schema> {
                ::std::vec![$(generator.subschema_for::<$pty>()),*]
            }
            $($extra)*
        }
        const _: () = {
            #[$crate::linkme::distributed_slice($crate::METHODS)]
            #[linkme(crate = $crate::linkme)]
            static DEFINITION: $crate::MethodDef = $crate::MethodDef::of::<$name>();
        };
    };
}

/// Declares an API crate's reference: its namespace (`API_NAMESPACE`) and title (`API_TITLE`),
/// `openrpc()`, its OpenRPC document built from the namespace's method definitions (what
/// `rpc.discover` answers), and the unit test that keeps `docs/api/FILE.openrpc.json` equal to
/// it:
///
/// ```ignore
/// nelumbo_rpc::api_reference!("Nelumbo.", "Nelumbo hub API (nelumbo-miner)", "hub");
/// ```
#[macro_export]
macro_rules! api_reference {
    ($namespace:literal, $title:literal, $file:literal) => {
        /// The namespace of this API's methods (every wire name starts with it).
        pub const API_NAMESPACE: &str = $namespace;
        /// The API's title in its OpenRPC document.
        pub const API_TITLE: &str = $title;

        /// The API's OpenRPC document, built from its method definitions: what `rpc.discover`
        /// answers, and what the checked-in file under `docs/api/` holds.
        pub fn openrpc() -> ::serde_json::Value {
            $crate::openrpc_document(API_TITLE, &$crate::definitions(API_NAMESPACE))
        }

        #[cfg(test)]
        mod api_reference {
            #[test]
            fn the_checked_in_openrpc_document_is_current() {
                let path = ::std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(concat!(
                    "../../docs/api/",
                    $file,
                    ".openrpc.json"
                ));
                $crate::check_checked_in(&path, &super::openrpc());
            }
        }
    };
}
