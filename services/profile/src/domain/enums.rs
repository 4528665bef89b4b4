//! Closed vocabularies of the profile context. Stored and filtered by their
//! upper-case names so the database and filter expressions read like the domain.

use retention_domain::domain_enum;

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
