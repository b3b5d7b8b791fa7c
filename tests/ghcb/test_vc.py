"""#VC where the hardware raises it, delivered through the guest's IDT.

Exit codes are the SVM intercept codes of AMD APM vol. 2 appendix C
("SVM Intercept Exit Codes"), written here as numbers: CPUID 72h, IOIO
7Bh, MSR 7Ch, VMMCALL 81h, WBINVD 89h, read of DR7 27h; SEV-SNP's
PAGE_NOT_VALIDATED is 404h.
"""

from __future__ import annotations

import pytest

from harness.ghcb import run_igvm
from harness.ghcb.machine import Limits
from harness.ghcb.report import judge
from harness.guests.protocol import ConfigPage, GuestReport, IoMode
from harness.matrix import recipes

from tests.ghcb.conftest import CBIT, idt_with, snippet_file

#: Terminate through the GHCB MSR protocol with reason set 3, code %eax
#: (GHCB "Termination Request": GHCBData[11:0] 0x100, [15:12] set, [23:16] code).
TERMINATE = """
terminate:
        movzbl  %al, %eax
        shl     $16, %eax
        or      $0x3100, %eax
        xor     %edx, %edx
        mov     $0xc0010130, %ecx
        wrmsr
        .byte   0xf3, 0x0f, 0x01, 0xd9
        hlt
"""

#: A #VC handler at 0x100800 that records the error code and resumes after
#: the faulting instruction, whose length the probe leaves in R15.
RECORDER = """
        .org    0x800
vc_handler:
        push    %rax
        push    %rbx
        mov     16(%rsp), %rax                  # error code
        lea     codes(%rip), %rbx
        mov     %rax, (%rbx,%r14,8)
        inc     %r14
        add     %r15, 24(%rsp)                  # RIP += length
        pop     %rbx
        pop     %rax
        add     $8, %rsp
        iretq
"""
HANDLER = 0x100800


@pytest.mark.parametrize("platform", ("sev-es", "sev-snp"))
def test_port_io_payload_through_its_vc_handler(platform, images, record_property):
    """payload64-ghcb told to use port I/O (io_mode 0) inside an SEV-ES/SNP
    guest, with an IDT from the VP context whose #VC gate is the payload's
    ghcb_vc_entry: every IN and OUT raises #VC with exit code 0x7B and the
    handler completes it through the GHCB.  The guest's report is the
    native one plus its GHCB line, and the count of #VCs follows from the
    line protocol: per console byte one IN of the line status register and
    one OUT, plus the final OUT to isa-debug-exit."""
    guest = images["payload64-ghcb"]
    data = snippet_file(guest.data, platform, idt=idt_with(29, guest.symbols["ghcb_vc_entry"]),
                        config=ConfigPage(io_mode=IoMode.PORT, exit_status=recipes.STATUS_OK))
    result = run_igvm(data, platform, cbit=CBIT)
    record_property("ghcb_model", result.counts_line())
    print(result.counts_line())
    verdict = judge(result, recipes.STATUS_OK)
    assert verdict.passed, verdict.message
    text = result.console.decode()
    ghcb_line = next(line for line in text.splitlines(keepends=True) if line.startswith("IGVMT ghcb"))
    through_ports = len(text) - len(ghcb_line)
    assert result.exits == {**{k: v for k, v in result.exits.items() if not k.startswith("#VC")},
                            "#VC:0x7b (IOIO)": 2 * through_ports + 1}
    assert verdict.report.one("boot")["io_mode"] == IoMode.PORT
    assert verdict.report.one("boot")["idtr_base"] == 0x8000


@pytest.mark.parametrize("platform", ("sev-es", "sev-snp"))
def test_exit_codes_of_intercepted_instructions(platform, assemble, record_property):
    expect = [0x72, 0x7B, 0x7C, 0x89, 0x81, 0x27]
    code = assemble(f"""
        xor     %r14d, %r14d
        mov     $2, %r15d
        cpuid
        mov     $0x3f8, %edx
        mov     $1, %r15d
        in      %dx, %al
        mov     $0x10, %ecx                     # IA32_TIME_STAMP_COUNTER: intercepted
        mov     $2, %r15d
        rdmsr
        mov     $2, %r15d
        wbinvd
        mov     $3, %r15d
        vmmcall
        mov     $3, %r15d
        mov     %dr7, %rax
        lea     codes(%rip), %rsi
        lea     expect(%rip), %rdi
        mov     $1, %eax
1:      mov     (%rsi), %rbx
        cmp     (%rdi), %rbx
        jne     terminate                       # reason = 1 + index of the mismatch
        add     $8, %rsi
        add     $8, %rdi
        inc     %eax
        cmp     ${len(expect) + 1}, %eax
        jne     1b
        cmp     ${len(expect)}, %r14d
        jne     terminate
        xor     %eax, %eax
{TERMINATE}
{RECORDER}
        .data
codes:  .skip 64
expect: .quad {", ".join(hex(c) for c in expect)}
""")
    result = run_igvm(snippet_file(code, platform, idt=idt_with(29, HANDLER)), platform, cbit=CBIT)
    record_property("ghcb_model", result.counts_line())
    assert result.status == "terminated" and result.guest_status == 0, result.reason
    vc = {k: n for k, n in result.exits.items() if k.startswith("#VC:")}
    assert sorted(int(k[4:].split()[0], 16) for k in vc) == sorted(expect)
    assert set(vc.values()) == {1}


def test_no_idt_is_a_shutdown_naming_the_exit_code(assemble):
    code = assemble("cpuid\n" + TERMINATE)
    result = run_igvm(snippet_file(code, "sev-es"), "sev-es", cbit=CBIT)
    assert result.status == "shutdown"
    assert "#VC (error code 0x72 (CPUID))" in result.reason
    assert "IDTR limit 0x0 has no gate for vector 29" in result.reason


def test_unvalidated_page_raises_vc_until_pvalidate(assemble):
    """SNP: RAM outside the launch is private and not validated: a private
    read of it raises #VC 0x404 (the access is retried after the handler);
    the handler validates the page with PVALIDATE."""
    code = assemble(f"""
        xor     %r14d, %r14d
        xor     %r15d, %r15d                    # a fault: no length, retried
        mov     0x300000, %rax
        cmp     $1, %r14d
        jne     1f
        xor     %eax, %eax
        jmp     terminate
1:      mov     $9, %eax
{TERMINATE}
        .org    0x800
vc_handler:
        push    %rax
        push    %rcx
        push    %rdx
        mov     24(%rsp), %rax                  # error code
        lea     codes(%rip), %rcx
        mov     %rax, (%rcx,%r14,8)
        inc     %r14
        mov     $0x300000, %eax                 # PVALIDATE: RAX page, RCX 0 (4 KiB), RDX 1
        xor     %ecx, %ecx
        mov     $1, %edx
        .byte   0xf2, 0x0f, 0x01, 0xff
        pop     %rdx
        pop     %rcx
        pop     %rax
        add     $8, %rsp
        iretq
        .data
codes:  .skip 16
""")
    result = run_igvm(snippet_file(code, "sev-snp", idt=idt_with(29, HANDLER)), "sev-snp", cbit=CBIT)
    assert result.status == "terminated" and result.guest_status == 0, result.reason
    assert result.exits.get("#VC:0x404 (PAGE_NOT_VALIDATED)") == 1
    assert result.exits.get("insn:PVALIDATE") == 1


def test_runaway_guest_ends_at_the_instruction_limit(assemble):
    code = assemble("1: jmp 1b\n")
    result = run_igvm(snippet_file(code, "sev-es"), "sev-es", cbit=CBIT,
                      limits=Limits(instructions=5000))
    assert result.status == "limit"
    assert "instruction limit 5000 reached at 0x100000" in result.reason
    assert not judge(result, 0).passed


def test_report_parses_like_the_console_parser(images, cell_file):
    """The console bytes are what harness.guests.protocol reads: the same
    records whether parsed from the model's bytes or from its text."""
    result = run_igvm(cell_file("vp-context", "sev-es"), "sev-es", cbit=CBIT)
    report = GuestReport.parse(result.console.decode("ascii"))
    assert [r.kind for r in report] == ["ghcb", "boot", "regs", "done"]
    assert report.status == recipes.STATUS_OK and report.booted and report.done
