//! One macro for every one-byte code table of the wire formats.
//!
//! `code_enum!` declares an enum whose variants stand for byte codes, with
//! `code()` and `From<Enum> for u8`. An `open` table decodes every byte
//! (codes it does not know become `Unknown(code)`: data, never an error) and
//! has `From<u8>`; a `closed` table lists every valid code and decodes with
//! `from_code`, which refuses the others.

/// Declares a byte-code enum; see the module documentation.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: open {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// Any other code.
            Unknown(u8),
        }

        impl $name {
            /// The byte code.
            pub const fn code(self) -> u8 {
                match self {
                    $( Self::$variant => $code, )*
                    Self::Unknown(code) => code,
                }
            }
        }

        impl From<u8> for $name {
            fn from(code: u8) -> Self {
                match code {
                    $( $code => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v.code()
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: closed {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $code, )*
        }

        impl $name {
            /// The byte code.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The value for `code`; `None` for a code outside the table.
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $( $code => Some(Self::$variant), )*
                    _ => None,
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v.code()
            }
        }
    };
}

pub(crate) use code_enum;

#[cfg(test)]
mod test {
    use super::super::cmd::{CompletionCode, FruControlOption};
    use super::super::event::{MState, SensorType};

    #[test]
    fn test_open_tables_round_trip_every_byte() {
        for b in 0..=u8::MAX {
            assert_eq!(u8::from(SensorType::from(b)), b);
            assert_eq!(u8::from(CompletionCode::from(b)), b);
        }
        assert_eq!(SensorType::from(0xF0), SensorType::FruHotSwap);
        assert_eq!(SensorType::from(0x77), SensorType::Unknown(0x77));
        assert_eq!(
            CompletionCode::from(0xD5),
            CompletionCode::NotSupportedInState
        );
    }

    #[test]
    fn test_closed_tables_refuse_other_codes() {
        for b in 0..=u8::MAX {
            match MState::from_code(b) {
                Some(m) => assert_eq!(m.code(), b),
                None => assert!(b > 7),
            }
            if let Some(o) = FruControlOption::from_code(b) {
                assert_eq!(u8::from(o), b);
            }
        }
        assert_eq!(FruControlOption::from_code(5), None);
        assert_eq!(u8::from(FruControlOption::Quiesce), 4);
    }
}
