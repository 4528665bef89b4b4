//! Closed vocabularies of the profile context. Stored and filtered by their
//! upper-case names so the database and filter expressions read like the domain.

macro_rules! domain_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            pub fn names() -> Vec<String> {
                Self::ALL.iter().map(|v| v.as_str().to_string()).collect()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

domain_enum!(CustomerKind { Individual = "INDIVIDUAL", Business = "BUSINESS" });
domain_enum!(Gender { Female = "FEMALE", Male = "MALE", Other = "OTHER" });
domain_enum!(Education {
    Primary = "PRIMARY",
    Secondary = "SECONDARY",
    Vocational = "VOCATIONAL",
    Bachelor = "BACHELOR",
    Master = "MASTER",
    Doctorate = "DOCTORATE",
});
domain_enum!(IncomeBand {
    Low = "LOW",
    LowerMiddle = "LOWER_MIDDLE",
    Middle = "MIDDLE",
    UpperMiddle = "UPPER_MIDDLE",
    High = "HIGH",
});
domain_enum!(
    /// The five credit grades of the customer order model (DOMAIN §5).
    CreditRating { Best = "BEST", Good = "GOOD", Fair = "FAIR", Poor = "POOR", NoCredit = "NO_CREDIT" }
);
domain_enum!(
    /// Business condition grades (DOMAIN §5): special grade = steady profit ...
    /// grade three = heavy loss, not improving.
    BusinessCondition {
        SpecialGrade = "SPECIAL_GRADE",
        GradeOne = "GRADE_ONE",
        GradeTwo = "GRADE_TWO",
        GradeThree = "GRADE_THREE",
    }
);
domain_enum!(ContactChannel {
    Email = "EMAIL",
    Sms = "SMS",
    Phone = "PHONE",
    Post = "POST",
    Push = "PUSH",
    InPerson = "IN_PERSON",
});
domain_enum!(ConsentStatus { Granted = "GRANTED", Withdrawn = "WITHDRAWN" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in CreditRating::ALL {
            assert_eq!(CreditRating::parse(v.as_str()), Some(*v));
        }
        assert_eq!(
            BusinessCondition::parse("GRADE_TWO"),
            Some(BusinessCondition::GradeTwo)
        );
        assert_eq!(
            CustomerKind::parse("individual"),
            None,
            "names are case-sensitive"
        );
    }
}
