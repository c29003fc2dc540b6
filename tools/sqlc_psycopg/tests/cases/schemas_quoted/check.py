from typing import assert_type

from case_schemas_quoted import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    h.execute("INSERT INTO billing.invoices VALUES (1, 'paid'), (2, 'open')")
    h.execute("""INSERT INTO crm.invoices VALUES (1, 'Ann'), (2, 'Bob')""")
    h.execute("""INSERT INTO "UserProfiles" VALUES (7, 'Seven')""")
    b = h.check(lambda: query.billing_invoice(h.conn, id=1), query.BILLING_INVOICE, (1,), fetch="one")
    assert_type(b, models.BillingInvoice)
    assert b is not None and b.state is models.State.PAID
    c = h.check(lambda: query.crm_invoice(h.conn, id=2), query.CRM_INVOICE, (2,), fetch="one")
    assert_type(c, models.CrmInvoice)
    assert c is not None and c.Customer_Name == "Bob"
    p = h.check(lambda: query.profile(h.conn, userId=7), query.PROFILE, (7,), fetch="one")
    assert_type(p, models.UserProfile)
    assert p == models.UserProfile(userId=7, displayName="Seven")
    paid = h.check(
        lambda: query.paid_invoices(h.conn, state=models.State.PAID),
        query.PAID_INVOICES,
        (models.State.PAID,),
    )
    assert paid == [(1, "Ann")]


async def check_async(h: AsyncHarness) -> None:
    paid = await h.check(
        lambda: query.paid_invoices_async(h.conn, state=models.State.OPEN),
        query.PAID_INVOICES,
        (models.State.OPEN,),
    )
    assert paid[0].Customer_Name == "Bob"
