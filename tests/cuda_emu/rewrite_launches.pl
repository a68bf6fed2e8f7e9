#!/usr/bin/perl
# The emulator's view of a .cu file (tests/cuda_emu/kb_cuda_emu.h): each
# `kernel<<<grid, block[, smem[, stream]]>>>(` becomes
# `(kb_emu::launch(grid, block[, smem[, stream]], "kernel") % kernel)(`, and
# `extern __shared__ [__align__(n)] T name[];` a pointer to the launch's
# dynamic shared memory, and `__shared__ T name[N]...;` becomes
# `__shared__ T KB_EMU_SHARED_NAME(name)[N]...; KB_EMU_SHARED_STATIC(name)`
# (kb_cuda_emu.h: `kb_emu::shared_static(name, sizeof name);`, NaN bits for
# each new block; under ThreadSanitizer `name` refers to the block's copy),
# and a kernel declared `__launch_bounds__(MAX[, ...]) name(...) {` checks
# its block size first (`kb_emu::launch_bounds(MAX, "name");`: a GPU refuses
# a launch over MAX threads per block).
# .cuh headers are rewritten too (cuda_emu.cmake puts the rewritten copies
# first on the include path). Usage: rewrite_launches.pl IN OUT
use strict;
use warnings;
my ($in, $out) = @ARGV;
open(my $fh, '<', $in) or die "rewrite_launches: $in: $!\n";
local $/;
my $src = <$fh>;
close $fh;
# inside a macro definition (a line continued with a backslash) the kernel is
# a macro parameter: its name is stringised (#kernel) rather than quoted
$src =~ s{\b([A-Za-z_]\w*(?:<[^<>;()]*>)?)<<<(.*?)>>>(?=([^\n]*))}
         {my ($k, $cfg, $rest) = ($1, $2, $3); my $name = ($rest =~ /\\\s*$/) ? "#$k" : "\"$k\"";
          "(kb_emu::launch($cfg, $name) % $k)"}ge;
my $count = () = $src =~ /<<</g;
die "rewrite_launches: $in: a launch left unrewritten\n" if $count;
$src =~ s{extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([A-Za-z_][\w ]*?)\s+(\w+)\[\];}
         {$1 *$2 = ($1 *)kb_emu::dynamic_smem();}g;
$src =~ s{\b__shared__\s+((?:__align__\(\d+\)\s+)?[A-Za-z_][\w: ]*?)\s+(\w+)((?:\[[^\]\n]+\])+)\s*;}
         {__shared__ $1 KB_EMU_SHARED_NAME($2)$3; KB_EMU_SHARED_STATIC($2)}g;
$src =~ s{__launch_bounds__\(((?:[^()]|\([^()]*\))*)\)(\s*)(\w+)(\s*\((?:[^()]|\([^()]*\))*\)\s*\{)}
         {my ($b, $sp, $k, $sig) = ($1, $2, $3, $4); my $max = (split /,/, $b)[0];
          "__launch_bounds__($b)$sp$k$sig kb_emu::launch_bounds($max, \"$k\");"}ge;
open(my $oh, '>', $out) or die "rewrite_launches: $out: $!\n";
print $oh "#line 1 \"$in\"\n", $src;
close $oh;
